"""`flchain node ...`: keys, applying to the registry, and the registrar's decisions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from fl_chain.chain import checkpoints, enrolment, quorum, registry, reputation
from fl_chain.chain.client import ChainClient
from fl_chain.chain.identity import keystore_address, load_key, write_keystore
from fl_chain.chain.registry import Capacity
from fl_chain.cli_common import (
    DeploymentOpt,
    HomeOpt,
    KeyOpt,
    RpcOpt,
    acting_account,
    chain_from_options,
    checksum,
    console,
    deployment_path,
    read_password,
)
from fl_chain.errors import FlchainError
from fl_chain.proctree import detect_cores, detect_memory_mb
from fl_chain.views import columns_table, fixed, key_value_table

app = typer.Typer(help="Node identity and registration.", no_args_is_help=True)


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
        from fl_chain.node.capacity import measure_samples_per_sec

        console.print("measuring training throughput (1 s)...")
        samples_per_sec = measure_samples_per_sec()
    capacity = Capacity(cores or detect_cores(), memory_mb or detect_memory_mb(), samples_per_sec)
    if pow:
        with _mining_progress(client) as advance:
            receipt, tried = enrolment.apply(client, account, capacity, endpoint, True, advance)
        console.print(f"found nonce after {tried:,} hashes")
    else:
        receipt, _ = enrolment.apply(client, account, capacity, endpoint)
    console.print(
        f"{account.address} applied (cores={capacity.cores}, memory={capacity.memory_mb} MB, "
        f"samples/s={capacity.samples_per_sec}); status {registry.status_of(client, account.address)}; "
        f"tx {receipt['transactionHash'].hex()}"
    )


@contextmanager
def _mining_progress(client: ChainClient) -> Iterator[Callable[[int], None]]:
    """A progress bar for mining, after an estimate of the expected time."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from fl_chain.protocol.pow import hash_rate

    _, difficulty = enrolment.proof_difficulty(client)
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
        yield lambda n: progress.advance(bar, n)


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
    from fl_chain.protocol.pow import target_for

    if difficulty < 1:
        raise FlchainError(f"--difficulty {difficulty}: expected >= 1")
    client = chain_from_options(home, deployment, rpc)
    admin = acting_account(client, key, "admin")
    registry.set_open_registration(client, admin, not close, target_for(difficulty))
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
    """Grant (or revoke) VALIDATOR_ROLE on the ValidationQuorum contract (admin). A revocation also
    discounts the former validator's votes on rounds and checkpoints not yet resolved."""
    client = chain_from_options(home, deployment, rpc)
    quorum.quorum_contract(client)
    node = checksum(address)
    admin = acting_account(client, key, "admin")
    quorum.set_validator(client, admin, node, granted=not revoke)
    if not revoke:  # a validator pays gas for its attestations (topped up on a local chain)
        enrolment.ensure_gas(client, node)
    console.print(f"{node}: VALIDATOR_ROLE {'revoked' if revoke else 'granted'}")
    if revoke:  # its votes would still count until someone discounts them
        rounds = quorum.discount_all(client, admin, node)
        proposed = checkpoints.discount_all(client, admin, node) if client.checkpoints is not None else []
        console.print(f"{node}: discounted its votes on {len(rounds)} rounds and {len(proposed)} checkpoints")


@app.command("simulated-keys")
def simulated_keys(
    count: Annotated[int, typer.Option("--count", min=1, max=1000, help="How many simulated nodes")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the keys file (mode 0600)")],
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Register COUNT throwaway node keys on a local development chain (funded, approved) and write them
    for a Flower App's simulated nodes: pass `--run-config "flchain-simulated-keys='FILE'"` to `flwr run`."""
    from fl_chain.chain.setup import bootstrap
    from fl_chain.node.simulated_keys import RUN_CONFIG_KEY, write_simulated_keys

    client = chain_from_options(home, deployment, rpc)
    if enrolment.development_faucet(client) is None:  # the development admin funds and approves them
        raise FlchainError("simulated keys need a local development chain (`flchain chain up`): no admin key")
    accounts = bootstrap.register_nodes(client, count)
    keys = ["0x" + a.key.hex().removeprefix("0x") for a in accounts]
    write_simulated_keys(out, deployment_path(home, deployment), keys)
    console.print(f"{count} simulated nodes registered and approved; run config: {RUN_CONFIG_KEY}='{out}'")


def _registrar_action(action: str, address: str, key: Path | None, home, deployment, rpc) -> None:
    client = chain_from_options(home, deployment, rpc)
    node = checksum(address)
    receipt = registry.registrar_action(client, acting_account(client, key, "registrar"), action, node)
    console.print(
        f"{node}: {registry.status_of(client, node)} (tx {receipt['transactionHash'].hex()}, "
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
    record = registry.get_node(client, node)
    rows = {
        "status": record.status,
        "cores": str(record.capacity.cores),
        "memory MB": str(record.capacity.memory_mb),
        "samples/s": str(record.capacity.samples_per_sec),
        "applied at (unix)": str(record.applied_at),
        "endpoint": record.endpoint or "-",
        "reputation": fixed(reputation.reputation_of(client, node), 6),
    }
    console.print(key_value_table(f"node {node}", rows))


@app.command("proof")
def proof(
    address: Annotated[str, typer.Argument(help="Node address, or a keystore file")],
    task: Annotated[int, typer.Option(help="Commitment-mode task")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the proof to this JSON file")
    ] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """A node's reputation and status in its task's latest finalized checkpoint, with the Merkle proof
    ReputationCheckpoints checks (commitment mode)."""
    from fl_chain.node.standing import node_proof
    from fl_chain.paths import state_home
    from fl_chain.store_read import allow_local_store

    client = chain_from_options(home, deployment, rpc)
    allow_local_store(state_home(home) / "store")  # this machine's store, as for pull and audit
    node = keystore_address(Path(address)) if Path(address).is_file() else checksum(address)
    found = node_proof(client, task, node)
    rows = {
        "checkpoint": f"{found.checkpoint} (through round {found.through_round}), verified on-chain",
        "reputation": fixed(found.reputation, 6),
        "status": "active" if found.active else "suspended",
        "proof": f"{len(found.proof)} hashes",
    }
    console.print(key_value_table(f"node {found.node}, task {task}", rows))
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(found.to_json(), indent=1) + "\n")
        except OSError as exc:
            raise FlchainError(f"--json {json_out}: cannot write: {exc.strerror or exc}") from None
        console.print(f"proof written to {json_out}")


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
    page = registry.list_nodes(client, offset, limit)
    total = registry.node_count(client)
    rows = [(a, status, fixed(reputation.reputation_of(client, a))) for a, status in page]
    title = f"nodes {offset + 1 if page else 0}-{offset + len(page)} of {total}"
    console.print(columns_table(title, ("address", "status", "reputation"), rows))
