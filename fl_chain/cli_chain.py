"""`flchain chain ...`: compile, start/stop a local chain, deploy onto any node, show status."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fl_chain.chain.client import NODE_STATUS, ChainClient, connect
from fl_chain.chain.compile import compile_contracts
from fl_chain.chain.deploy import deploy_contracts, dev_account
from fl_chain.chain.deployment import DEPLOYMENT_FILE, Deployment
from fl_chain.chain.identity import load_key
from fl_chain.chain.localnode import (
    BACKENDS,
    ChainProcess,
    pid_alive,
    read_pidfile,
    start_chain,
    stop_pid,
    write_pidfile,
)
from fl_chain.cli_common import (
    DeploymentOpt,
    HomeOpt,
    RpcOpt,
    chain_from_options,
    checksum,
    console,
    read_password,
)
from fl_chain.errors import FlchainError
from fl_chain.paths import state_home

app = typer.Typer(help="Compile, start, deploy and inspect the flchain contracts.", no_args_is_help=True)
PIDFILE = "chain.json"


@app.command("compile")
def compile_cmd(
    force: Annotated[bool, typer.Option(help="Rebuild even if cached")] = False,
) -> None:
    """Compile the contracts (solcjs through py-solc-x, or native solc); cached until a source changes."""
    started = time.monotonic()
    artifacts = compile_contracts(force=force)
    for name, art in artifacts.items():
        console.print(f"{name}: {len(art['bytecode']) // 2 - 1} bytes")
    console.print(f"done in {time.monotonic() - started:.1f} s")


def start_local_deployment(
    home: Path, backend: str, port: int, host: str, block_time: float | None, detach: bool
) -> tuple[ChainProcess, Deployment]:
    """Start a local chain, deploy the contracts with development keys and write both state files."""
    existing = read_pidfile(home / PIDFILE)
    if existing is not None:
        raise FlchainError(
            f"a chain started from {home} is already running (pid {existing.pid}, port "
            f"{existing.port}): run `flchain chain down` first or use another --home"
        )
    chain = start_chain(backend, port, home / "chain.log", host, block_time, detach=detach)
    try:
        w3 = connect(chain.rpc_url)
        admin, coordinator = dev_account(0), dev_account(1)
        deployment = deploy_contracts(w3, admin, coordinator.address, chain.rpc_url, backend)
        deployment.dev_keys = {
            "admin": "0x" + admin.key.hex().removeprefix("0x"),
            "registrar": "0x" + admin.key.hex().removeprefix("0x"),
            "coordinator": "0x" + coordinator.key.hex().removeprefix("0x"),
        }
        deployment.save(home / DEPLOYMENT_FILE)
        write_pidfile(home / PIDFILE, chain)
    except BaseException:
        stop_pid(chain.pid)
        raise
    return chain, deployment


def _print_deployment(deployment: Deployment, extra: dict[str, str] | None = None) -> None:
    table = Table(title="flchain deployment", show_header=False)
    table.add_row("chain id", str(deployment.chain_id))
    table.add_row("RPC URL", deployment.rpc_url)
    table.add_row("backend", deployment.backend)
    for name, address in deployment.contracts.items():
        table.add_row(name, address)
    for role, address in deployment.roles.items():
        table.add_row(f"role: {role}", address)
    for key, value in (extra or {}).items():
        table.add_row(key, value)
    console.print(table)


@app.command("up")
def up(
    backend: Annotated[str, typer.Option(help=f"Local node: {' | '.join(BACKENDS)}")] = "anvil",
    port: Annotated[int, typer.Option(help="JSON-RPC port")] = 8545,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    block_time: Annotated[
        float | None, typer.Option("--block-time", help="Seconds between blocks (default: instant)")
    ] = None,
    detach: Annotated[bool, typer.Option(help="Return after start-up; stop with `chain down`")] = False,
    home: HomeOpt = None,
) -> None:
    """Start a local chain, deploy the contracts, grant roles and write the deployment file."""
    home_dir = state_home(home)
    chain, deployment = start_local_deployment(home_dir, backend, port, host, block_time, detach)
    _print_deployment(
        deployment,
        {
            "pid": str(chain.pid),
            "deployment file": str(home_dir / DEPLOYMENT_FILE),
            "log": chain.log,
        },
    )
    if detach:
        console.print(f"{backend} running in the background; stop it with `flchain chain down`")
        return
    console.print(f"{backend} running (pid {chain.pid}); press Ctrl-C to stop")

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        while pid_alive(chain.pid):
            time.sleep(0.5)
        raise FlchainError(f"the {backend} node exited unexpectedly; see {chain.log}")
    except KeyboardInterrupt:
        console.print("stopping the chain")
    finally:
        stop_pid(chain.pid)
        (home_dir / PIDFILE).unlink(missing_ok=True)


@app.command("down")
def down(home: HomeOpt = None) -> None:
    """Stop the chain started by `chain up` from this state directory, by its PID."""
    home_dir = state_home(home)
    chain = read_pidfile(home_dir / PIDFILE)
    if chain is None:
        (home_dir / PIDFILE).unlink(missing_ok=True)
        console.print(f"no chain started from {home_dir} is running")
        return
    stop_pid(chain.pid)
    if pid_alive(chain.pid):
        raise FlchainError(f"could not stop the chain (pid {chain.pid})")
    (home_dir / PIDFILE).unlink(missing_ok=True)
    console.print(f"stopped {chain.backend} (pid {chain.pid}, port {chain.port})")


@app.command("deploy")
def deploy(
    rpc: Annotated[str, typer.Option("--rpc", help="RPC URL of an existing node")],
    key: Annotated[Path, typer.Option("--key", help="Keystore of the deploying admin account")],
    coordinator: Annotated[
        str | None, typer.Option(help="Address granted COORDINATOR_ROLE (default: the admin)")
    ] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
) -> None:
    """Deploy the contracts onto any existing node (a testnet, a private network, ...)."""
    admin = load_key(key, read_password(key))
    w3 = connect(rpc)
    coord = checksum(coordinator, "--coordinator") if coordinator else admin.address
    result = deploy_contracts(w3, admin, coord, rpc)
    path = deployment or state_home(home) / DEPLOYMENT_FILE
    result.save(path)
    _print_deployment(result, {"deployment file": str(path)})


def count_nodes(client: ChainClient, page: int = 200) -> dict[str, int]:
    """Number of registered nodes per status, read page by page."""
    counts = dict.fromkeys(NODE_STATUS[1:], 0)
    total = client.registry.functions.nodeCount().call()
    for offset in range(0, total, page):
        _, statuses = client.registry.functions.listNodes(offset, page).call()
        for status in statuses:
            counts[NODE_STATUS[status]] += 1
    return counts


@app.command("status")
def status(home: HomeOpt = None, deployment: DeploymentOpt = None, rpc: RpcOpt = None) -> None:
    """Show the deployment, node counts by status, tasks and committed rounds."""
    client = chain_from_options(home, deployment, rpc)
    counts = count_nodes(client)
    tasks = client.ledger.functions.taskCount().call()
    rounds = sum(client.ledger.functions.roundCount(t).call() for t in range(1, tasks + 1))
    extra = {"block": str(client.w3.eth.block_number)}
    extra.update({f"nodes {k.lower()}": str(v) for k, v in counts.items()})
    extra["tasks"] = str(tasks)
    extra["rounds committed"] = str(rounds)
    _print_deployment(client.deployment, extra)
