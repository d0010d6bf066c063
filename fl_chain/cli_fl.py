"""`flchain server`, `flchain client`, `flchain demo`: the federated-learning commands. Each declares its
options and hands the work to one function (fl/server_run.py, fl/node_supervisor.py, demo.py)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from fl_chain.chain.setup.localnode import BACKENDS
from fl_chain.cli_common import (
    DeploymentOpt,
    HomeOpt,
    RpcOpt,
    console,
    deployment_path,
    err_console,
    read_password,
    sigterm_as_interrupt,
)
from fl_chain.config import RunConfig, load_config, validate
from fl_chain.errors import FlchainError
from fl_chain.paths import state_home
from fl_chain.views import describe_event, print_entry, summary_table
from fl_chain.wire.report import NodeNotice, RunEntry

if TYPE_CHECKING:
    from fl_chain.chain.setup.bootstrap import LocalDeployment


def config_with_overrides(config_path: Path | None, rounds: int | None) -> RunConfig:
    """The run configuration from a TOML file (or the defaults), with --rounds applied."""
    config = load_config(config_path)
    if rounds is not None:
        if rounds < 1:
            raise FlchainError(f"--rounds {rounds}: expected >= 1")
        config.federation.rounds = rounds
    return config


def demo(
    clients: Annotated[int, typer.Option(help="Simulated nodes, registered on-chain", min=1, max=1000)] = 10,
    fraction: Annotated[
        float | None,
        typer.Option(
            help="Fraction of the nodes sampled per round, at least federation.min_nodes "
            "(default: config's federation.fraction_train, 1.0)"
        ),
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Training rounds (default: config, 5)")] = None,
    backend: Annotated[str, typer.Option(help=f"Local chain: {' | '.join(BACKENDS)}")] = "anvil",
    non_iid: Annotated[
        float | None, typer.Option("--non-iid", help="Dirichlet alpha for non-IID partitions (default: IID)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config (default: built-in defaults)")] = None,
    home: Annotated[Path, typer.Option(help="Where the demo writes its files")] = Path(".flchain/demo"),
    verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's own logs")] = False,
    validators: Annotated[
        int, typer.Option(help="Validators that attest every round; clients train only from finalized models")
    ] = 0,
    dashboard: Annotated[
        bool,
        typer.Option("--dashboard", help="Serve `flchain dashboard` beside the run; stays up until Ctrl-C"),
    ] = False,
    dashboard_port: Annotated[int, typer.Option(help="Port of --dashboard (on 127.0.0.1)")] = 8600,
    verified: Annotated[
        bool,
        typer.Option(
            "--verified", help="Verified rounds (ledger.mode = verified): validators re-derive each aggregate"
        ),
    ] = False,
    commitment: Annotated[
        bool,
        typer.Option(
            "--commitment",
            help="Commitment mode (ledger.mode = commitment): flat gas per round, reputation checkpointed",
        ),
    ] = False,
) -> None:
    """Everything on one machine: local chain, contracts, node keys, Simulation Engine, summary, plot."""

    if backend not in BACKENDS:
        raise FlchainError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    run_config = config_with_overrides(config, rounds)
    if non_iid is not None:
        if non_iid <= 0:
            raise FlchainError(f"--non-iid {non_iid}: the Dirichlet alpha must be > 0")
        run_config.task.partitioning, run_config.task.alpha = "dirichlet", non_iid
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise FlchainError(f"--fraction {fraction}: expected a fraction in (0, 1]")
        run_config.federation.fraction_train = fraction
    if verified and commitment:
        raise FlchainError("--verified and --commitment: a run has one ledger mode, choose one")
    if verified or commitment:
        run_config.ledger.mode = "verified" if verified else "commitment"
        validate(run_config, str(config) if config else "--verified" if verified else "--commitment")
    if not verbose:
        _quiet_simulation()
    split = (
        f"Dirichlet(alpha={run_config.task.alpha})" if run_config.task.partitioning == "dirichlet" else "IID"
    )
    sampled = max(
        min(run_config.federation.min_nodes, clients), int(clients * run_config.federation.fraction_train)
    )
    console.print(
        f"flchain demo: {clients} simulated nodes ({sampled} sampled per round), "
        f"{run_config.federation.rounds} rounds, "
        f"{run_config.federation.strategy}, {backend} chain, {split} partitions"
    )
    if not dashboard:
        _run_demo_and_report(run_config, clients, home.resolve(), backend, validators)
        return
    from fl_chain.chain.setup import bootstrap
    from fl_chain.dashboard.serve import DashboardServer, check_address

    check_address("127.0.0.1", dashboard_port, allow_remote=False)  # before anything is started
    home.resolve().mkdir(parents=True, exist_ok=True)
    with sigterm_as_interrupt():
        local = bootstrap.start_local(home.resolve(), backend)
        board = None
        try:
            board = DashboardServer(local.client, port=dashboard_port, home=home.resolve())
            console.print(f"dashboard: {board.start().url}")
            _run_demo_and_report(run_config, clients, home.resolve(), backend, validators, local)
            console.print(f"the chain and the dashboard stay up at {board.url}: Ctrl-C stops both")
            board.wait()
        finally:
            if board is not None:
                board.stop()
            local.stop()


def _run_demo_and_report(
    run_config: RunConfig,
    clients: int,
    home: Path,
    backend: str,
    validators: int,
    local: LocalDeployment | None = None,
) -> None:
    """Run the demo (on `local`'s chain if given) and print its summary; an error if rounds are missing."""
    from fl_chain.demo import run_demo
    from fl_chain.verify.validator import Attestation, CheckpointVerdict, Dispute

    started = time.monotonic()
    # Simulated nodes all verify; only refusals are news (a line per node would bury 100-node runs).
    result = run_demo(
        run_config,
        clients,
        home,
        backend,
        on_entry=_demo_entry,
        validators=validators,
        local=local,
        progress=_registration_progress(started),
    )
    if validators:
        verdicts = result.extra["attestations"]
        disputes = [v for v in verdicts if isinstance(v, Dispute)]
        derived = [
            v.derivation_seconds for v in verdicts if isinstance(v, Attestation) and v.derivation_seconds
        ]
        checked = [v for v in verdicts if isinstance(v, CheckpointVerdict)]
        rejected = [v for v in checked if not v.attested]
        rounds = len(verdicts) - len(disputes) - len(checked)
        console.print(
            f"{validators} validators attested {rounds} times"
            + (f" (each re-derived its round: median {statistics.median(derived):.2f} s)" if derived else "")
            + (f" and {len(checked) - len(rejected)} reputation checkpoints" if checked else "")
            + f"; {len(disputes) + len(rejected)} disputes; quorum {result.extra['quorum']}"
        )
        for d in disputes:
            console.print(Text.assemble(("dispute", "red"), f" task {d.task} round {d.round}: {d.reason}"))
        for c in rejected:
            console.print(Text.assemble(("dispute", "red"), f" checkpoint {c.checkpoint}: {c.reason}"))
    expected = run_config.federation.rounds + 1
    console.print(summary_table(result.reports, f"task {result.task}: rounds committed on-chain"))
    console.print(
        f"chain holds {result.chain_rounds} rounds (0-{result.chain_rounds - 1}); "
        f"final accuracy {100 * result.reports[-1].accuracy:.2f} %; plot {result.plot}; "
        f"{time.monotonic() - started:.0f} s"
    )
    if result.chain_rounds != expected or len(result.reports) != expected:
        raise FlchainError(f"the run ended early: {len(result.reports)} of {expected} rounds committed")


def _registration_progress(started: float):
    """A line per batch of registered nodes (1,000 nodes take a while; silence would look stuck)."""

    def show(done: int, total: int) -> None:
        console.print(f"registered and approved {done}/{total} nodes ({time.monotonic() - started:.0f} s)")

    return show


def _demo_entry(entry: RunEntry) -> None:
    if not (isinstance(entry, NodeNotice) and entry.verdict == "verified"):
        print_entry(entry)


def _quiet_simulation() -> None:
    """Refusals and dropped replies are printed per round; Flower's own notices (such as run_simulation's
    deprecation) and Ray's are hidden unless asked for."""
    import logging
    import os
    import warnings

    logging.getLogger("flwr").setLevel(logging.ERROR)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    warnings.filterwarnings("ignore", category=FutureWarning)


def server(
    config: Annotated[
        Path | None, typer.Option(help="TOML run configuration, e.g. configs/demo.toml (default: built-in)")
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Override federation.rounds")] = None,
    host: Annotated[str, typer.Option(help="Interface the SuperLink listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="SuperLink port (Fleet + Control API)")] = 9100,
    certificates: Annotated[
        Path | None, typer.Option(help="Directory with ca.crt, server.pem, server.key for TLS")
    ] = None,
    insecure: Annotated[bool, typer.Option(help="Allow plain HTTP on a non-loopback interface")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue a task from its last on-chain round (e.g. after a crash)")
    ] = False,
    task: Annotated[
        int | None, typer.Option(help="Task to resume (default: this coordinator's newest)")
    ] = None,
    home: HomeOpt = None,
    app: Annotated[
        Path | None,
        typer.Option(
            help="A Flower App directory whose ServerApp uses ChainStrategy (default: flchain's own)"
        ),
    ] = None,
) -> None:
    """Start a SuperLink, submit the flchain ServerApp (or --app's) and stream its progress until the run
    ends."""
    from fl_chain.runners.server import ServerOptions, ServerRun

    run_config = config_with_overrides(config, rounds)
    key = run_config.chain.coordinator_key
    options = ServerOptions(
        config=run_config,
        home=state_home(home),
        deployment=Path(run_config.chain.deployment)
        if run_config.chain.deployment
        else deployment_path(home, None),
        host=host,
        port=port,
        certificates=certificates,
        insecure=insecure,
        resume=resume,
        task=task,
        password=read_password(Path(key)) if key else None,
        app=app,
    )
    run = ServerRun(options).check()
    if run.resume_task is not None:
        console.print(
            f"resuming task {run.resume_task} after round {run.already} "
            f"(model 0x{run.resumed_hash.hex()[:12]}…, verified)"
        )
    if run.nothing_to_do:
        console.print(f"task {run.resume_task} already has {run.already} rounds: nothing to do")
        return
    with sigterm_as_interrupt():
        result = run.execute(print_entry, console.print)
    console.print(summary_table(result.reports, "rounds committed on-chain"))
    result.raise_for_failure()
    console.print(f"run complete; logs and reports in {result.run_dir}")


def client(
    key: Annotated[Path, typer.Option(help="This node's keystore")],
    superlink: Annotated[str, typer.Option(help="SuperLink address HOST:PORT")] = "127.0.0.1:9100",
    task: Annotated[str, typer.Option(help="ML task: digits, or module:attr naming a TaskSpec")] = "digits",
    partition: Annotated[str, typer.Option(help="This node's partition of the task's data, i/n")] = "0/1",
    data: Annotated[
        Path | None, typer.Option(help="Own data file for the task (digits: .npz with x, y)")
    ] = None,
    partitioning: Annotated[str, typer.Option(help="iid | dirichlet | shards")] = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet alpha")] = 0.5,
    data_seed: Annotated[int, typer.Option(help="Seed of the partitioning (the same on every node)")] = 42,
    root_certificates: Annotated[Path | None, typer.Option(help="CA certificate of a TLS SuperLink")] = None,
    model_source: Annotated[str, typer.Option(help="message | store (fetch the committed blob)")] = "message",
    finalized_only: Annotated[
        bool, typer.Option(help="Train only from models finalized by the validator quorum")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Local port of this SuperNode's app API")] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Start a SuperNode running this node's ClientApp; runs until Ctrl-C."""
    import re

    from fl_chain.runners.node import NodeSupervisor
    from fl_chain.wire.node_config import NodeConfig, parse_partition

    if not re.fullmatch(r"[^:\s]+:\d+", superlink):
        raise FlchainError(f"--superlink {superlink!r}: expected HOST:PORT")
    partition_id, partitions = parse_partition(partition)
    node = NodeConfig(
        deployment=deployment_path(home, deployment).resolve(),
        rpc=rpc,
        key_path=key.resolve(),
        partition_id=partition_id,
        num_partitions=partitions,
        partitioning=partitioning,
        alpha=alpha,
        data_seed=data_seed,
        data_path=data.resolve() if data else None,
        task=task,
        model_source=model_source,
        finalized_only=finalized_only,
    ).validate()
    supervisor = NodeSupervisor.open(node, key, read_password(key), superlink, state_home(home))
    supervisor.root_certificates, supervisor.port = root_certificates, port
    if supervisor.status != "Active":
        err_console.print(
            f"warning: {supervisor.address} is {supervisor.status} in the NodeRegistry; the server will "
            "refuse this node until a registrar approves it"
        )
    with sigterm_as_interrupt():
        supervisor.serve(
            lambda e: console.print("chain: " + describe_event(e), highlight=False),
            console.print,
            err_console.print,
        )
