"""The ServerApp: set up the task on-chain (round 0 = the initial model), then run ChainStrategy around
the configured Flower strategy, with central evaluation on the server's held-out split."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from logging import INFO
from pathlib import Path

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp import strategy as flwr_strategies
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fl_chain.chain.client import ChainClient, open_chain
from fl_chain.chain.deployment import DEPLOYMENT_FILE
from fl_chain.chain.identity import PASSWORD_ENV, load_key
from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task, get_round, require_task, round_count
from fl_chain.config import RunConfig
from fl_chain.errors import FlchainError
from fl_chain.fl.selection import Selector
from fl_chain.fl.strategy import (
    ChainContext,
    ChainStrategy,
    RoundReport,
    ScoringPolicy,
    arrays_to_record,
    wait_for_finalization,
)
from fl_chain.fl.training import evaluate, get_arrays, set_arrays
from fl_chain.store import ModelStore, arrays_from_bytes, fetch_blob
from fl_chain.store_http import BlobServer
from fl_chain.tasks import load_task

RUN_CONFIG_KEY = "flchain-run"  # path of the JSON run description written by `flchain server`


def build_strategy(config: RunConfig) -> Strategy:
    """The configured Flower strategy, unchanged; federated evaluation is off (the server evaluates)."""
    fed = config.federation
    cls = getattr(flwr_strategies, fed.strategy)
    reputation_selection = config.selection.mode == "reputation"
    kwargs = {
        # With reputation selection ChainStrategy picks the nodes; the wrapped strategy takes them all.
        "fraction_train": 1.0 if reputation_selection else fed.fraction_train,
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


def coordinator_account(client: ChainClient, config: RunConfig) -> LocalAccount:
    """The coordinator's key: a keystore from the config, else the local chain's development key."""
    if config.chain.coordinator_key:
        import os

        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise FlchainError(
                f"set {PASSWORD_ENV} for the coordinator keystore {config.chain.coordinator_key}"
            )
        return load_key(Path(config.chain.coordinator_key), password)
    dev = client.deployment.dev_keys.get("coordinator")
    if not dev:
        raise FlchainError("set chain.coordinator_key: this deployment has no local coordinator key")
    return Account.from_key(dev)


def run_federation(
    grid: Grid,
    config: RunConfig,
    home: Path,
    report_path: Path | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
    resume_task: int | None = None,
) -> list[RoundReport]:
    """Everything the server does in one run; returns the per-round reports (round 0 first).

    With `resume_task` the run continues that task from its last on-chain round: the model is fetched
    by its on-chain URI and verified, round numbers continue, nothing is committed twice."""
    deployment = Path(config.chain.deployment) if config.chain.deployment else home / DEPLOYMENT_FILE
    client = open_chain(deployment, config.chain.rpc or None)
    coordinator = coordinator_account(client, config)
    task = load_task(config.task.name)
    (x_val, y_val), (x_test, y_test) = task.server_data(config.task.seed)
    model = task.build_model(config.task.seed)
    initial = get_arrays(model)

    def metrics_on(x: np.ndarray, y: np.ndarray) -> Callable[[Mapping[str, np.ndarray]], tuple[float, float]]:
        def run(arrays: Mapping[str, np.ndarray]) -> tuple[float, float]:
            set_arrays(model, arrays)
            return evaluate(model, x, y)

        return run

    validation = metrics_on(x_val, y_val)
    test = metrics_on(x_test, y_test)

    blob_server = None
    store_dir = Path(config.store.dir) if config.store.dir else home / "store"
    public = config.store.public_url or None
    if config.store.http_port >= 0:
        blob_server = BlobServer(store_dir, config.store.http_host, config.store.http_port).start()
        public = public or f"http://{config.store.http_host}:{blob_server.port}/"
    store = ModelStore(store_dir, public)
    try:
        offset, receipt = 0, None
        if resume_task is not None:
            task_id, offset, initial, digest, uri = resume_point(client, coordinator, resume_task)
            if offset >= config.federation.rounds:
                log(INFO, "flchain: task %s already has %s rounds; nothing to resume", task_id, offset)
                return []
            log(INFO, "flchain: resuming task %s after round %s (model 0x%s)", task_id, offset, digest.hex())
        else:
            digest, uri = store.put_arrays(initial)
            config_hash = keccak(text=config.to_json())
            task_id = create_task(client, coordinator, config_hash, store.base_uri)
            receipt = commit_round(client, coordinator, task_id, 0, digest, "", ZERO_HASH, {})
            wait_for_finalization(client, task_id, 0, config.federation.wait_finalized)
        loss, accuracy = test(initial)
        strategy = ChainStrategy(
            build_strategy(config),
            ChainContext(client, coordinator, task_id, store, digest),
            validation_loss=lambda arrays: validation(arrays)[0],
            test_metrics=test,
            max_update_norm=config.scoring.max_update_norm,
            auth_timeout=config.federation.auth_timeout,
            min_nodes=config.federation.min_nodes,
            report_path=report_path,
            on_round=on_round,
            scoring=ScoringPolicy(
                config.scoring.method,
                config.scoring.shapley_budget,
                config.scoring.reject_outliers,
                config.scoring.outlier_norm_ratio,
                config.task.seed,
            ),
            selector=Selector(
                fraction=config.federation.fraction_train,
                min_nodes=config.federation.min_nodes,
                sharpness=config.selection.sharpness,
                exploration=config.selection.exploration,
                seed=config.task.seed,
            )
            if config.selection.mode == "reputation"
            else None,
            round_seconds=config.selection.round_seconds,
            wait_finalized=config.federation.wait_finalized,
            batch_size=config.task.batch_size,
            round_offset=offset,
        )
        if receipt is not None:
            strategy.record(
                RoundReport(
                    round=0,
                    accuracy=accuracy,
                    loss=loss,
                    model_hash="0x" + digest.hex(),
                    uri=uri,
                    tx="0x" + bytes(receipt["transactionHash"]).hex(),
                    gas=int(receipt["gasUsed"]),
                )
            )
        train_config = ConfigRecord(
            {
                "local-epochs": config.task.local_epochs,
                "lr": config.task.learning_rate,
                "batch-size": config.task.batch_size,
                "seed": config.task.seed,
            }
        )
        strategy.start(
            grid,
            arrays_to_record(initial),
            num_rounds=config.federation.rounds - offset,
            timeout=config.federation.round_timeout,
            train_config=train_config,
        )
        return strategy.reports
    finally:
        if blob_server is not None:
            blob_server.stop()


def resume_point(
    client: ChainClient, coordinator: LocalAccount, task: int
) -> tuple[int, int, dict, bytes, str]:
    """(task, last round, its verified model, its hash, its URI) of a task this coordinator owns."""
    require_task(client, task)
    owner = client.ledger.functions.getTask(task).call()[0]
    if owner.lower() != coordinator.address.lower():
        raise FlchainError(f"task {task} is owned by {owner}, not by this coordinator {coordinator.address}")
    last = round_count(client, task) - 1
    if last < 0:
        raise FlchainError(f"task {task} has no committed round to resume from")
    record = get_round(client, task, last)
    model = arrays_from_bytes(fetch_blob(record.uri, record.model_hash))
    return task, last, model, record.model_hash, record.uri


def newest_owned_task(client: ChainClient, coordinator: str) -> int:
    """The newest task created by this coordinator."""
    for task in range(int(client.ledger.functions.taskCount().call()), 0, -1):
        if client.ledger.functions.getTask(task).call()[0].lower() == coordinator.lower():
            return task
    raise FlchainError(f"no task owned by {coordinator} to resume")


def write_run_file(
    path: Path, config: RunConfig, home: Path, report_path: Path, resume_task: int | None = None
) -> None:
    """The run description the Deployment Engine's ServerApp reads (path passed in run config)."""
    path.write_text(
        json.dumps(
            {
                "config": json.loads(config.to_json()),
                "home": str(home),
                "report": str(report_path),
                "resume_task": resume_task,
            }
        )
    )


def read_run_file(path: Path) -> tuple[RunConfig, Path, Path, int | None]:
    """Inverse of write_run_file."""
    data = json.loads(path.read_text())
    config = RunConfig.from_json(json.dumps(data["config"]))
    return config, Path(data["home"]), Path(data["report"]), data.get("resume_task")


def make_server_app(config: RunConfig, home: Path, on_round: Callable[[RoundReport], None] | None = None):
    """A ServerApp with a fixed configuration (simulation and notebooks)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(grid, config, home, home / "rounds.jsonl", on_round)

    return app


# The Deployment Engine's entry point (`serverapp` in the app's pyproject): reads the run file.
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the run file named in the run config."""
    run_file = context.run_config.get(RUN_CONFIG_KEY)
    if not run_file:
        raise FlchainError(f"run config has no {RUN_CONFIG_KEY!r}: start runs with `flchain server`")
    config, home, report, resume_task = read_run_file(Path(str(run_file)))
    run_federation(grid, config, home, report, resume_task=resume_task)


__all__ = ["RoundReport", "app", "asdict", "make_server_app", "run_federation"]
