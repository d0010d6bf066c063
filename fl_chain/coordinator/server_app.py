"""The ServerApp: set up the task on-chain (round 0 = the initial model) or resume it, then run
ChainStrategy around the configured Flower strategy, with central evaluation on the server's held-out
split. Everything it reports goes to a `RunEvents` sink (wire/report.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp import strategy as flwr_strategies
from flwr.serverapp.strategy import Strategy

from fl_chain.chain import ledger
from fl_chain.chain.client import ChainClient, open_chain
from fl_chain.chain.deployment import DEPLOYMENT_FILE
from fl_chain.chain.identity import resolve_account
from fl_chain.config import RunConfig
from fl_chain.coordinator.committer import Commit
from fl_chain.coordinator.evaluation import Evaluation
from fl_chain.coordinator.key_handoff import handed_password
from fl_chain.coordinator.ledger_session import LedgerSession
from fl_chain.coordinator.policies import effective_rules, gate_samples, run_options
from fl_chain.coordinator.reporting import run_end_reported
from fl_chain.coordinator.strategy import ChainStrategy
from fl_chain.coordinator.trust_strategy import TrustWeighted
from fl_chain.defence.anchor import ROOT_CLASS, ROOT_HALF, RootAnchor
from fl_chain.errors import FlchainError
from fl_chain.protocol.task_identity import task_app_id
from fl_chain.store import BlobStore, ModelStore, is_s3, store_from_config
from fl_chain.store_http import BlobServer
from fl_chain.tasks import load_task
from fl_chain.tasks.base import TaskSpec
from fl_chain.wire.records import arrays_to_record
from fl_chain.wire.report import RoundReport, RunEvents
from fl_chain.wire.run_spec import RUN_CONFIG_KEY, RunSpec


def build_strategy(config: RunConfig) -> Strategy:
    """The configured Flower strategy, unchanged; federated evaluation is off (the server evaluates)."""
    fed = config.federation
    cls = getattr(flwr_strategies, fed.strategy)
    kwargs = {
        # With reputation selection ChainStrategy picks the nodes, with a fraction below 1 its gate
        # samples them (see `gate_samples`); the wrapped strategy then takes them all.
        "fraction_train": 1.0
        if config.selection.mode == "reputation" or gate_samples(config)
        else fed.fraction_train,
        "fraction_evaluate": 0.0,
        "min_train_nodes": fed.min_nodes,
        "min_available_nodes": fed.min_nodes,
        **fed.strategy_args,
    }
    if fed.strategy == "FedProx" and "proximal_mu" not in kwargs:
        kwargs["proximal_mu"] = config.task.proximal_mu or 0.01
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise FlchainError(f"federation.strategy_args for {fed.strategy}: {exc}") from None


def wrapped_strategy(config: RunConfig, evaluation: Evaluation) -> Strategy:
    """The configured Flower strategy, inside FLTrust weighting when `federation.aggregation = "trust"`."""
    inner = build_strategy(config)
    if config.federation.aggregation == "trust" and evaluation.root is not None:
        return TrustWeighted(inner, evaluation.root)
    return inner


def root_rows(size: int, half: object) -> slice:
    """The root set's rows to train on: all, or its first (0) or second (1) half."""
    if half is None:
        return slice(None)
    return slice(None, size // 2) if int(half) == 0 else slice(size // 2, None)


def root_labels(y: np.ndarray, most: int = 100) -> list[int]:
    """The root set's labels, for the one-label root updates (RootAnchor.closest_labels): a classification
    task's (integer labels, at most `most` of them); none for any other."""
    if not np.issubdtype(y.dtype, np.integer):
        return []
    labels = np.unique(y)
    return [int(v) for v in labels] if len(labels) <= most else []


def task_evaluation(task: TaskSpec, seed: int) -> tuple[Evaluation, dict[str, np.ndarray]]:
    """The server's evaluation hooks on its validation and test splits, and the initial model."""
    from fl_chain.tasks.training import evaluate, get_arrays, set_arrays, train

    (x_val, y_val), (x_test, y_test) = task.server_data(seed)
    model = task.build_model(seed)
    initial = get_arrays(model)

    def metrics_on(x: np.ndarray, y: np.ndarray):
        def run(arrays: Mapping[str, np.ndarray]) -> tuple[float, float]:
            set_arrays(model, arrays)
            return evaluate(model, x, y)

        return run

    validation = metrics_on(x_val, y_val)
    root_model = task.build_model(seed)

    def train_on_root(arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        # The nodes' local settings, on the server's clean validation split (the root set), or on one
        # half of it (ROOT_HALF: the anchor's reproducibility check, defence/anchor.py), or on its examples
        # of one label (ROOT_CLASS: what an honest node holding only that label would send).
        set_arrays(root_model, arrays)
        rows = root_rows(len(y_val), config.get(ROOT_HALF))
        if config.get(ROOT_CLASS) is not None:
            rows = np.flatnonzero(y_val == int(config[ROOT_CLASS]))
        train(
            root_model,
            x_val[rows],
            y_val[rows],
            epochs=int(config.get("local-epochs", 1)),
            lr=float(config.get("lr", 0.05)),
            batch_size=int(config.get("batch-size", 32)),
            seed=int(config.get("seed", 0)),
        )
        return get_arrays(root_model)

    evaluation = Evaluation(
        metrics_on(x_test, y_test),
        lambda arrays: validation(arrays)[0],
        RootAnchor(train_on_root, root_examples=len(y_val), halves=True, labels=root_labels(y_val)),
    )
    return evaluation, initial


def coordinator_account(client: ChainClient, config: RunConfig) -> LocalAccount:
    """The coordinator's key: a keystore from the config, else the local chain's development key."""
    key = Path(config.chain.coordinator_key) if config.chain.coordinator_key else None
    # `flchain server` hands the password over as a file, never through the environment (key_handoff.py)
    password = handed_password() if key is not None else None
    return resolve_account(client.deployment.dev_keys, "coordinator", key, password)


@contextmanager
def open_store(config: RunConfig, home: Path) -> Iterator[BlobStore]:
    """The run's model store (a directory, or an S3 bucket), a directory served over HTTP for the run's
    duration if configured."""
    public = config.store.public_url or None
    if is_s3(config.store.dir):
        yield store_from_config(config.store, home)
        return
    store_dir = Path(config.store.dir) if config.store.dir else home / "store"
    server = None
    if config.store.http_port >= 0:
        server = BlobServer(store_dir, config.store.http_host, config.store.http_port).start()
        public = public or f"http://{config.store.http_host}:{server.port}/"
    try:
        yield ModelStore(store_dir, public)
    finally:
        if server is not None:
            server.stop()


def resume_point(
    client: ChainClient, coordinator: LocalAccount, task: int
) -> tuple[ledger.RoundRecord, dict]:
    """The last committed round of a task this coordinator owns, and its verified model."""
    owner = ledger.task_owner(client, task)
    if owner.lower() != coordinator.address.lower():
        raise FlchainError(f"task {task} is owned by {owner}, not by this coordinator {coordinator.address}")
    last = ledger.round_count(client, task) - 1
    if last < 0:
        raise FlchainError(f"task {task} has no committed round to resume from")
    return ledger.load_model(client, task, last)


def round_zero(evaluation: Evaluation, initial: dict, commit: Commit) -> RoundReport:
    """The report of a new task's round 0: the initial model's test metrics and its commit."""
    loss, accuracy = evaluation.test_metrics(initial)
    return RoundReport(round=0, accuracy=accuracy, loss=loss, **commit.report_fields())


def run_federation(
    grid: Grid, config: RunConfig, home: Path, events: RunEvents, resume_task: int | None = None
) -> list[RoundReport]:
    """Everything the server does in one run; returns the per-round reports (round 0 first).

    With `resume_task` the run continues that task from its last on-chain round: the model is fetched
    by its on-chain URI and verified, round numbers continue, nothing is committed twice."""
    deployment = Path(config.chain.deployment) if config.chain.deployment else home / DEPLOYMENT_FILE
    client = open_chain(deployment, config.chain.rpc or None)
    client.on_outage(events.notice)
    coordinator = coordinator_account(client, config)
    evaluation, initial = task_evaluation(load_task(config.task.name), config.task.seed)
    with open_store(config, home) as store:
        session = LedgerSession(client, coordinator, store, events, config)
        inner, options = wrapped_strategy(config, evaluation), run_options(config, evaluation, events)
        offset = 0
        if resume_task is None:
            rules = effective_rules(options, type(inner).__name__)  # the task's rules, fixed on-chain
            committer, commit = session.open_task(initial, task_app_id(config.task.name), rules)
            events.emit(round_zero(evaluation, initial, commit))
        else:
            record, initial = resume_point(client, coordinator, resume_task)
            offset = record.round
            if offset >= config.federation.rounds:
                return events.rounds
            committer = session.resume_task(resume_task, record.model_hash)
        strategy = ChainStrategy.for_task(inner, committer, options, offset)
        strategy.start(
            grid,
            arrays_to_record(initial),
            num_rounds=config.federation.rounds - offset,
            timeout=config.federation.round_timeout,
            train_config=ConfigRecord(
                {
                    "local-epochs": config.task.local_epochs,
                    "lr": config.task.learning_rate,
                    "batch-size": config.task.batch_size,
                    "seed": config.task.seed,
                }
            ),
        )
    return events.rounds


def make_server_app(
    config: RunConfig, home: Path, events: RunEvents, wrap_grid: Callable[[Grid], Grid] | None = None
) -> ServerApp:
    """A ServerApp with a fixed configuration (simulation and notebooks); `wrap_grid` lets experiments
    put a Grid wrapper between Flower and the coordinator (experiments/collusion.py)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(wrap_grid(grid) if wrap_grid else grid, config, home, events)

    return app


# The Deployment Engine's entry point (`serverapp` in the app's pyproject): reads the run spec.
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the RunSpec file named in the run config; its end (success or
    the error) is the last run event, so `flchain server` never has to read logs."""
    run_file = context.run_config.get(RUN_CONFIG_KEY)
    if not run_file:
        raise FlchainError(f"run config has no {RUN_CONFIG_KEY!r}: start runs with `flchain server`")
    spec = RunSpec.read(Path(str(run_file)))
    events = RunEvents(spec.events)
    with run_end_reported(events):
        run_federation(grid, spec.config, spec.home, events, spec.resume_task)
