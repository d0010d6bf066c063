"""`flchain node ...`: keys, applying to the registry, and the registrar's decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fl_chain.chain.client import NODE_STATUS, ChainClient
from fl_chain.chain.identity import keystore_address, load_key, write_keystore
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
from fl_chain.proctree import detect_cores, detect_memory_mb

app = typer.Typer(help="Node identity and registration.", no_args_is_help=True)

GAS_ALLOWANCE_WEI = 10**18  # what a local chain's faucet gives a new node for its transactions


@app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the encrypted keystore")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing file")] = False,
) -> None:
    """Create a node key and write it as an encrypted keystore (password from FLCHAIN_KEY_PASSWORD
    or a prompt)."""
    if out.exists() and not force:
        raise FlchainError(f"{out} already exists: refusing to overwrite a key (use --force)")
    password = read_password(out, confirm=True)
    address = write_keystore(out, password, overwrite=force)
    console.print(f"wrote {out}  address {address}")


def ensure_gas(client: ChainClient, address: str) -> None:
    """On a local chain, top up a new node from the development faucet; elsewhere, explain."""
    if client.w3.eth.get_balance(address) > 0:
        return
    faucet = client.deployment.dev_keys.get("admin")
    if not faucet:
        raise FlchainError(f"account {address} has no ether to pay for gas on {client.deployment.rpc_url}")
    from eth_account import Account

    client.fund(Account.from_key(faucet), address, GAS_ALLOWANCE_WEI)


@app.command("apply")
def apply(
    key: Annotated[Path, typer.Option("--key", help="This node's keystore")],
    cores: Annotated[int | None, typer.Option(help="Declared CPU cores (default: detected)")] = None,
    memory_mb: Annotated[int | None, typer.Option(help="Declared memory in MB (default: detected)")] = None,
    samples_per_sec: Annotated[
        int | None, typer.Option(help="Training throughput (default: measured by a 1 s local benchmark)")
    ] = None,
    endpoint: Annotated[str, typer.Option(help="Optional contact endpoint")] = "",
    pow: Annotated[
        bool, typer.Option("--pow", help="Join at once by proof of work (registry in open registration)")
    ] = False,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Apply to the registry with this node's declared capacity; a registrar then approves it, or with
    --pow the node mines a proof of work and becomes active at once."""
    client = chain_from_options(home, deployment, rpc)
    account = load_key(key, read_password(key))
    if samples_per_sec is None:
        from fl_chain.fl.capacity import measure_samples_per_sec

        console.print("measuring training throughput (1 s)...")
        samples_per_sec = measure_samples_per_sec()
    capacity = (cores or detect_cores(), memory_mb or detect_memory_mb(), samples_per_sec)
    if not 0 < capacity[0] < 2**16:
        raise FlchainError(f"--cores {capacity[0]}: expected 1..65535")
    if pow:
        nonce = _mine_proof(client, account.address)
        ensure_gas(client, account.address)
        receipt = client.transact(
            account, client.registry.functions.registerWithWork(capacity, endpoint, nonce)
        )
    else:
        ensure_gas(client, account.address)
        receipt = client.transact(account, client.registry.functions.register(capacity, endpoint))
    console.print(
        f"{account.address} applied (cores={capacity[0]}, memory={capacity[1]} MB, "
        f"samples/s={capacity[2]}); status {client.node_status(account.address)}; "
        f"tx {receipt['transactionHash'].hex()}"
    )


def _mine_proof(client: ChainClient, address: str) -> int:
    """Mine a registration proof with a progress bar and an estimate of the expected time."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from fl_chain.chain.pow import difficulty_of, hash_rate, mine

    registry = client.registry.functions
    if not registry.openRegistration().call():
        raise FlchainError(
            "open registration is off on this registry: apply without --pow and ask the registrar"
        )
    target = int(registry.powTarget().call())
    difficulty = difficulty_of(target)
    rate = hash_rate()
    console.print(
        f"mining a registration proof: {difficulty:,.0f} hashes expected, ~{difficulty / rate:.1f} s "
        f"at {rate:,.0f} hashes/s"
    )
    columns = (
        TextColumn("mining"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} hashes"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("mine", total=difficulty)
        nonce, tried = mine(
            client.deployment.chain_id,
            client.registry.address,
            address,
            target,
            progress=lambda n: progress.advance(bar, n),
        )
    console.print(f"found nonce {nonce} after {tried:,} hashes")
    return nonce


@app.command("open-registration")
def open_registration(
    difficulty: Annotated[
        int, typer.Option(help="Expected hashes per identity (target = 2^256 / difficulty)")
    ] = 2**16,
    close: Annotated[bool, typer.Option("--close", help="Switch open registration off")] = False,
    key: KeyOpt = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Let nodes join by proof of work instead of registrar approval (admin)."""
    from fl_chain.chain.pow import target_for

    if difficulty < 1:
        raise FlchainError(f"--difficulty {difficulty}: expected >= 1")
    client = chain_from_options(home, deployment, rpc)
    admin = acting_account(client, key, "admin")
    client.transact(admin, client.registry.functions.setOpenRegistration(not close, target_for(difficulty)))
    state = "off" if close else f"on, difficulty {difficulty:,} hashes per identity"
    console.print(f"open registration {state}")


@app.command("validator-role")
def validator_role(
    address: str,
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the role away")] = False,
    key: KeyOpt = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Grant (or revoke) VALIDATOR_ROLE on the ValidationQuorum contract (admin)."""
    from fl_chain.chain.client import role_id

    client = chain_from_options(home, deployment, rpc)
    if client.validation is None:
        raise FlchainError("this deployment has no ValidationQuorum contract")
    node = checksum(address)
    admin = acting_account(client, key, "admin")
    fn = client.validation.functions.revokeRole if revoke else client.validation.functions.grantRole
    client.transact(admin, fn(role_id("VALIDATOR_ROLE"), node))
    console.print(f"{node}: VALIDATOR_ROLE {'revoked' if revoke else 'granted'}")


def _registrar_action(action: str, address: str, key: Path | None, home, deployment, rpc) -> None:
    client = chain_from_options(home, deployment, rpc)
    node = checksum(address)
    registrar = acting_account(client, key, "registrar")
    fn = getattr(client.registry.functions, action)(node)
    receipt = client.transact(registrar, fn)
    console.print(
        f"{node}: {client.node_status(node)} (tx {receipt['transactionHash'].hex()}, "
        f"gas {receipt['gasUsed']})"
    )


@app.command("approve")
def approve(
    address: str,
    key: KeyOpt = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Make a pending or suspended node active (REGISTRAR_ROLE)."""
    _registrar_action("approve", address, key, home, deployment, rpc)


@app.command("suspend")
def suspend(
    address: str,
    key: KeyOpt = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Suspend a node; it can be approved again (REGISTRAR_ROLE)."""
    _registrar_action("suspend", address, key, home, deployment, rpc)


@app.command("revoke")
def revoke(
    address: str,
    key: KeyOpt = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Revoke a node for good (REGISTRAR_ROLE)."""
    _registrar_action("revoke", address, key, home, deployment, rpc)


@app.command("show")
def show(
    address: Annotated[str, typer.Argument(help="Node address, or a keystore file")],
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Show one node's registry record and reputation."""
    client = chain_from_options(home, deployment, rpc)
    node = keystore_address(Path(address)) if Path(address).is_file() else checksum(address)
    status, capacity, applied_at, endpoint = client.registry.functions.getNode(node).call()
    reputation = client.reputation.functions.reputationOf(node).call()
    table = Table(title=f"node {node}", show_header=False)
    table.add_row("status", NODE_STATUS[status])
    table.add_row("cores", str(capacity[0]))
    table.add_row("memory MB", str(capacity[1]))
    table.add_row("samples/s", str(capacity[2]))
    table.add_row("applied at (unix)", str(applied_at))
    table.add_row("endpoint", endpoint or "-")
    table.add_row("reputation", f"{reputation / 1e6:.6f}")
    console.print(table)


@app.command("list")
def list_nodes(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """List registered nodes page by page, with status and reputation."""
    client = chain_from_options(home, deployment, rpc)
    addresses, statuses = client.registry.functions.listNodes(offset, limit).call()
    total = client.registry.functions.nodeCount().call()
    table = Table(title=f"nodes {offset + 1 if addresses else 0}-{offset + len(addresses)} of {total}")
    table.add_column("address")
    table.add_column("status")
    table.add_column("reputation", justify="right")
    for address, status in zip(addresses, statuses, strict=True):
        rep = client.reputation.functions.reputationOf(address).call()
        table.add_row(address, NODE_STATUS[status], f"{rep / 1e6:.4f}")
    console.print(table)
