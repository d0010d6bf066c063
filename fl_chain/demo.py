"""`flchain demo`: everything on one machine. A local chain, the contracts, one key per simulated
node (registered and approved on-chain), Flower's Simulation Engine, a summary and a plot; everything
it starts is stopped again, also on failure and Ctrl-C."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_account import Account

from fl_chain.chain.client import ChainClient, connect
from fl_chain.chain.deploy import deploy_contracts, dev_account
from fl_chain.chain.deployment import DEPLOYMENT_FILE
from fl_chain.chain.localnode import free_port, start_chain, stop_pid
from fl_chain.chain.reputation_model import ReputationParams
from fl_chain.config import RunConfig
from fl_chain.fl.strategy import RoundReport


@dataclass
class DemoResult:
    """What a demo run produced."""

    reports: list[RoundReport]
    task: int
    home: Path
    deployment: Path
    nodes: list[str]
    plot: Path | None = None
    chain_rounds: int = 0
    extra: dict = field(default_factory=dict)


def register_nodes(client: ChainClient, count: int, approve: bool = True) -> list[Account]:
    """New keys, funded from the development faucet, registered and (by default) approved."""
    admin = Account.from_key(client.deployment.dev_keys["admin"])
    nodes = [Account.from_key(secrets.token_bytes(32)) for _ in range(count)]
    for node in nodes:
        client.fund(admin, node.address, 10**17)
        client.transact(node, client.registry.functions.register((1, 1024, 0), ""))
        if approve:
            client.transact(admin, client.registry.functions.approve(node.address))
    return nodes


def run_demo(
    config: RunConfig,
    clients: int,
    home: Path,
    backend: str = "anvil",
    attacks: dict[int, dict] | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
    plot: bool = True,
    reputation_params: ReputationParams | None = None,
    validators: int = 0,
) -> DemoResult:
    """Run the demo; `home` receives the deployment file, the store, rounds.jsonl and the plot."""
    from flwr.simulation import run_simulation

    from fl_chain.fl.client_app import SimulationSettings, make_client_app
    from fl_chain.fl.server_app import make_server_app

    home.mkdir(parents=True, exist_ok=True)
    for stale in ("rounds.jsonl", "store"):
        target = home / stale
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    chain = start_chain(backend, free_port(), home / "chain.log")
    try:
        w3 = connect(chain.rpc_url)
        admin, coordinator = dev_account(0), dev_account(1)
        deployment = deploy_contracts(
            w3,
            admin,
            coordinator.address,
            chain.rpc_url,
            backend,
            (reputation_params or ReputationParams()).as_tuple(),
        )
        deployment.dev_keys = {
            "admin": "0x" + admin.key.hex().removeprefix("0x"),
            "registrar": "0x" + admin.key.hex().removeprefix("0x"),
            "coordinator": "0x" + coordinator.key.hex().removeprefix("0x"),
        }
        deployment_path = home / DEPLOYMENT_FILE
        deployment.save(deployment_path)
        client = ChainClient(w3, deployment)
        nodes = register_nodes(client, clients)
        validation = start_validators(client, validators, config) if validators else None
        if validators:
            config.federation.wait_finalized = config.federation.wait_finalized or 120.0
        config.chain.deployment = str(deployment_path)
        config.federation.min_nodes = min(config.federation.min_nodes, clients)
        settings = SimulationSettings(
            deployment=deployment_path,
            keys=["0x" + n.key.hex().removeprefix("0x") for n in nodes],
            partitioning=config.task.partitioning,
            alpha=config.task.alpha,
            data_seed=config.task.seed,
            task=config.task.name,
            attacks=attacks or {},
            finalized_only=validators > 0,
        )
        reports: list[RoundReport] = []

        def collect(report: RoundReport) -> None:
            reports.append(report)
            if on_round:
                on_round(report)

        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        try:
            run_simulation(
                server_app=make_server_app(config, home, collect),
                client_app=make_client_app(settings),
                num_supernodes=clients,
                backend_config={
                    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                    "init_args": {"num_cpus": 2},
                },
            )
        finally:
            if validation is not None:
                validation.stop()
        task = int(client.ledger.functions.taskCount().call())
        result = DemoResult(
            reports=reports,
            task=task,
            home=home,
            deployment=deployment_path,
            nodes=[n.address for n in nodes],
            chain_rounds=int(client.ledger.functions.roundCount(task).call()) if task else 0,
            extra={"attestations": validation.attested if validation else []},
        )
        (home / "demo-result.json").write_text(
            json.dumps(
                {"task": task, "nodes": result.nodes, "reports": [asdict(r) for r in reports]}, indent=1
            )
        )
        if plot and reports:
            result.plot = plot_accuracy(reports, home / "accuracy.png")
        return result
    finally:
        stop_pid(chain.pid)
        _stop_ray()


class ValidatorThreads:
    """In-process validators for the demo: one watcher loop attesting for every validator key."""

    def __init__(self, workers: list) -> None:
        import threading

        from fl_chain.chain.watcher import ChainWatcher

        self.workers = workers
        self.watcher = ChainWatcher(workers[0].client, None)
        self.attested: list = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self.watcher.poll():
                    for worker in self.workers:
                        done = worker.handle(event)
                        if done is not None:
                            self.attested.append(done)
            except Exception as exc:  # reported, and the loop goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(0.2)

    def stop(self) -> None:
        """Stop the loop and wait for it."""
        self._stop.set()
        self.thread.join(timeout=10)


def start_validators(client: ChainClient, count: int, config: RunConfig) -> ValidatorThreads:
    """Create, fund and authorise `count` validator keys and start attesting."""
    from fl_chain.chain.client import role_id
    from fl_chain.fl.validator import Validator
    from fl_chain.tasks import load_task

    admin = Account.from_key(client.deployment.dev_keys["admin"])
    task = load_task(config.task.name)
    held_out = task.server_data(config.task.seed)[1]
    workers = []
    for _ in range(count):
        account = Account.from_key(secrets.token_bytes(32))
        client.fund(admin, account.address, 10**17)
        client.transact(
            admin, client.validation.functions.grantRole(role_id("VALIDATOR_ROLE"), account.address)
        )
        workers.append(Validator(client, account, held_out, task.build_model))
    return ValidatorThreads(workers)


def _stop_ray() -> None:
    """Shut down Ray's worker processes if the simulation left them (e.g. after Ctrl-C)."""
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass


def plot_accuracy(reports: list[RoundReport], path: Path) -> Path:
    """PNG of test accuracy per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r.round for r in reports], [100 * r.accuracy for r in reports], marker="o")
    ax.set_xlabel("round (0 = initial model)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title("flchain demo: accuracy of each committed model")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
