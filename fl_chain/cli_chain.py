"""`flchain chain ...`: compile, start/stop a local chain, deploy onto any node, show status."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from web3 import Web3

from fl_chain.chain import ledger, registry
from fl_chain.chain.client import connect
from fl_chain.chain.deployment import DEPLOYMENT_FILE, Deployment
from fl_chain.chain.identity import keystore_address, load_key
from fl_chain.chain.setup import bootstrap, public_chain
from fl_chain.chain.setup.compile import compile_contracts
from fl_chain.chain.setup.deploy import DEFAULT_COMPLAINT_WINDOW, MAX_COMPLAINT_WINDOW, deploy_contracts
from fl_chain.chain.setup.localnode import (
    BACKENDS,
    ChainProcess,
    read_pidfile,
    write_pidfile,
)
from fl_chain.cli_common import (
    DeploymentOpt,
    HomeOpt,
    KeyOpt,
    RpcOpt,
    acting_account,
    chain_from_options,
    checksum,
    console,
    read_password,
)
from fl_chain.errors import FlchainError
from fl_chain.netaddr import is_loopback
from fl_chain.paths import state_home
from fl_chain.proctree import pid_alive
from fl_chain.views import key_value_table

app = typer.Typer(help="Compile, start, deploy and inspect the flchain contracts.", no_args_is_help=True)
PIDFILE = "chain.json"


@app.command("compile")
def compile_cmd(
    force: Annotated[bool, typer.Option(help="Rebuild even if cached")] = False,
) -> None:
    """Compile contracts/ from source (solcjs through py-solc-x, or native solc; for contract developers,
    in a checkout); cached until a source changes. Deploying uses the compiled contracts the package
    ships (`make artifacts` refreshes them)."""
    started = time.monotonic()
    artifacts = compile_contracts(force=force)
    for name, art in artifacts.items():
        console.print(f"{name}: {len(art['bytecode']) // 2 - 1} bytes")
    console.print(f"done in {time.monotonic() - started:.1f} s")


def start_local_deployment(
    home: Path,
    backend: str,
    port: int,
    host: str,
    block_time: float | None,
    detach: bool,
    state: Path | None = None,
) -> tuple[ChainProcess, Deployment, bool]:
    """Start a local chain (refusing a second one from the same state directory), deploy the contracts
    (unless `state` already holds them) with development keys on loopback, or with fresh role keystores
    under HOME/keys (password from FLCHAIN_KEY_PASSWORD or a prompt) on a host other machines reach, and
    record the chain in the PID file so `chain down` can stop it. Returns the process, the deployment
    and whether it was resumed."""
    existing = read_pidfile(home / PIDFILE)
    if existing is not None:
        raise FlchainError(
            f"a chain started from {home} is already running (pid {existing.pid}, port "
            f"{existing.port}): run `flchain chain down` first or use another --home"
        )
    password = None
    if not is_loopback(host):
        keystore = public_chain.role_keystore(home, "admin")
        password = read_password(keystore.parent, confirm=not keystore.exists())
    local = bootstrap.start_local(
        home, backend, port, host, block_time, detach, state=state, role_password=password
    )
    try:
        write_pidfile(home / PIDFILE, local.process)
    except BaseException:
        local.stop()
        raise
    return local.process, local.client.deployment, local.resumed


def _print_deployment(deployment: Deployment, extra: dict[str, str] | None = None) -> None:
    rows = {
        "chain id": str(deployment.chain_id),
        "RPC URL": deployment.rpc_url,
        "backend": deployment.backend,
    }
    rows.update(deployment.contracts)
    rows.update({f"role: {role}": address for role, address in deployment.roles.items()})
    console.print(key_value_table("flchain deployment", {**rows, **(extra or {})}))


@app.command("up")
def up(
    backend: Annotated[str, typer.Option(help=f"Local node: {' | '.join(BACKENDS)}")] = "anvil",
    port: Annotated[int, typer.Option(help="JSON-RPC port")] = 8545,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    block_time: Annotated[
        float | None, typer.Option("--block-time", help="Seconds between blocks (default: instant)")
    ] = None,
    detach: Annotated[bool, typer.Option(help="Return after start-up; stop with `chain down`")] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="anvil: keep the chain in this file; loaded when it exists (nothing is deployed again), "
            "written when the chain stops",
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Start a local chain, deploy the contracts, grant roles and write the deployment file."""
    home_dir = state_home(home)
    chain = None
    if not detach:
        # A shell starting us in the background (`cmd &`) sets SIGINT to "ignore", which Python keeps;
        # this command promises that Ctrl-C (SIGINT) stops it, so it takes the signal back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:  # whatever happens (Ctrl-C included, even right after start-up), a foreground chain is stopped
        chain, deployment, resumed = start_local_deployment(
            home_dir, backend, port, host, block_time, detach, state.resolve() if state else None
        )
        extra = {"pid": str(chain.pid), "deployment file": str(home_dir / DEPLOYMENT_FILE), "log": chain.log}
        extra.update(_public_rows(chain, home_dir))
        if state is not None:
            extra["state file"] = f"{state} ({'resumed' if resumed else 'new'})"
        _print_deployment(deployment, extra)
        if detach:
            console.print(f"{backend} running in the background; stop it with `flchain chain down`")
            return
        console.print(f"{backend} running (pid {chain.pid}); press Ctrl-C to stop")
        signal.signal(signal.SIGTERM, _terminate)
        while pid_alive(chain.pid):
            time.sleep(0.5)
        raise FlchainError(f"the {backend} node exited unexpectedly; see {chain.log}")
    except KeyboardInterrupt:
        console.print("stopping the chain")
    finally:
        if not detach and chain is not None:
            chain.stop()
            (home_dir / PIDFILE).unlink(missing_ok=True)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _public_rows(chain: ChainProcess, home: Path) -> dict[str, str]:
    """What `chain up` adds to its table for a chain other machines reach: the gate and the keystores."""
    if not chain.gate_pid:
        return {}
    rows = {
        "RPC gate": f"{chain.public_url} (pid {chain.gate_pid}): standard eth_* methods only",
        "node": f"{chain.rpc_url} (loopback only)",
    }
    for role in public_chain.ROLE_NAMES:
        rows[f"{role} keystore"] = str(public_chain.role_keystore(home, role))
    return rows


@app.command("down")
def down(home: HomeOpt = None) -> None:
    """Stop the chain started by `chain up` from this state directory, by its PID."""
    home_dir = state_home(home)
    chain = read_pidfile(home_dir / PIDFILE)
    if chain is None:
        (home_dir / PIDFILE).unlink(missing_ok=True)
        console.print(f"no chain started from {home_dir} is running")
        return
    chain.stop()
    if pid_alive(chain.pid):
        raise FlchainError(f"could not stop the chain (pid {chain.pid})")
    (home_dir / PIDFILE).unlink(missing_ok=True)
    console.print(f"stopped {chain.backend} (pid {chain.pid}, port {chain.port})")


@app.command("deploy")
def deploy(
    rpc: Annotated[str, typer.Option("--rpc", help="RPC URL of an existing node")],
    key: Annotated[Path, typer.Option("--key", help="Keystore of the deploying admin account")],
    registrar_key: Annotated[
        Path | None,
        typer.Option("--registrar-key", help="Keystore of the registrar (address only; default: the admin)"),
    ] = None,
    coordinator_key: Annotated[
        Path | None,
        typer.Option("--coordinator-key", help="Keystore of the coordinator (address only; default: admin)"),
    ] = None,
    complaint_window: Annotated[
        int,
        typer.Option(
            "--complaint-window",
            min=0,
            max=MAX_COMPLAINT_WINDOW,
            help="Seconds after a round's commit that omission complaints (and disputes of a finalized "
            "round) are accepted; after that, finality stands",
        ),
    ] = DEFAULT_COMPLAINT_WINDOW,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
) -> None:
    """Deploy the contracts onto any existing node (a testnet, a private network, ...); each role goes
    to the account of its keystore (only the admin's is decrypted: it signs the deployment)."""
    registrar = keystore_address(registrar_key) if registrar_key else None
    coordinator = keystore_address(coordinator_key) if coordinator_key else None
    admin = load_key(key, read_password(key))
    w3 = connect(rpc)
    result = deploy_contracts(
        w3, admin, coordinator or admin.address, rpc, registrar=registrar, complaint_window=complaint_window
    )
    path = deployment or state_home(home) / DEPLOYMENT_FILE
    result.save(path)
    _print_deployment(result, {"deployment file": str(path)})


@app.command("fund")
def fund(
    address: Annotated[str, typer.Argument(help="Account to send ether to (a node, a validator)")],
    ether: Annotated[float, typer.Option("--ether", min=0.000001, help="Amount in ether")] = 1.0,
    key: KeyOpt = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Send ether for gas from the admin (--key, or the local development admin) to a node's account:
    on a chain other machines reach, nodes pay their own gas and nothing funds them automatically."""
    client = chain_from_options(home, deployment, rpc)
    target = checksum(address)
    sender = acting_account(client, key, "admin")
    client.fund(sender, target, int(Web3.to_wei(ether, "ether")))
    balance = Web3.from_wei(client.w3.eth.get_balance(target), "ether")
    console.print(f"sent {ether:g} ether from {sender.address} to {target}; balance {balance} ether")


@app.command("status")
def status(home: HomeOpt = None, deployment: DeploymentOpt = None, rpc: RpcOpt = None) -> None:
    """Show the deployment, node counts by status, tasks and committed rounds."""
    client = chain_from_options(home, deployment, rpc)
    counts = registry.count_by_status(client)
    tasks = ledger.task_count(client)
    rounds = sum(ledger.round_count(client, t) for t in range(1, tasks + 1))
    extra = {"block": str(client.w3.eth.block_number)}
    extra.update({f"nodes {k.lower()}": str(v) for k, v in counts.items()})
    extra["tasks"] = str(tasks)
    extra["rounds committed"] = str(rounds)
    _print_deployment(client.deployment, extra)
