"""`flchain demo`: everything on one machine. Declares the command's options, applies them to the run
configuration and hands the run to demo.py; prints the summary (and serves the dashboard beside it)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from fl_chain.chain.setup.localnode import BACKENDS
from fl_chain.cli_common import console, sigterm_as_interrupt
from fl_chain.cli_fl import config_with_overrides
from fl_chain.config import RunConfig, validate
from fl_chain.errors import FlchainError
from fl_chain.extras import require_extra
from fl_chain.views import print_entry, summary_table
from fl_chain.wire.report import NodeNotice, RunEntry

if TYPE_CHECKING:
    from fl_chain.chain.setup.bootstrap import LocalDeployment


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
    require_extra("demo", "flchain demo")
    if dashboard:
        require_extra("dashboard", "flchain demo --dashboard")
    if backend not in BACKENDS:
        raise FlchainError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    run_config = _demo_config(config, rounds, non_iid, fraction, verified, commitment)
    if not verbose:
        _quiet_simulation()
    _announce_demo(run_config, clients, backend)
    if not dashboard:
        _run_demo_and_report(run_config, clients, home.resolve(), backend, validators)
        return
    _demo_with_dashboard(run_config, clients, home.resolve(), backend, validators, dashboard_port)


def _demo_config(
    config: Path | None,
    rounds: int | None,
    non_iid: float | None,
    fraction: float | None,
    verified: bool,
    commitment: bool,
) -> RunConfig:
    """The demo's run configuration: the file (or defaults) with the command's options applied and
    checked, each a one-line error naming the option."""
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
    return run_config


def _announce_demo(run_config: RunConfig, clients: int, backend: str) -> None:
    """The demo's first line: nodes, sampling, rounds, strategy, chain and partitioning."""
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


def _demo_with_dashboard(
    run_config: RunConfig, clients: int, home: Path, backend: str, validators: int, dashboard_port: int
) -> None:
    """`flchain demo --dashboard`: the demo on a chain the dashboard reads, both up until Ctrl-C."""
    from fl_chain.chain.setup import bootstrap
    from fl_chain.dashboard.serve import DashboardServer, check_address

    check_address("127.0.0.1", dashboard_port, allow_remote=False)  # before anything is started
    home.mkdir(parents=True, exist_ok=True)
    with sigterm_as_interrupt():
        local = bootstrap.start_local(home, backend)
        board = None
        try:
            board = DashboardServer(local.client, port=dashboard_port, home=home)
            console.print(f"dashboard: {board.start().url}")
            _run_demo_and_report(run_config, clients, home, backend, validators, local)
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
