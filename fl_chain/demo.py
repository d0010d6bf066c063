"""`flchain demo`: everything on one machine. A local chain, the contracts, one key per simulated
node (registered and approved on-chain), Flower's Simulation Engine, a summary and a plot; everything
it starts is stopped again, also on failure and Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_account import Account

from fl_chain.chain import ledger, quorum
from fl_chain.chain.client import ChainClient
from fl_chain.chain.setup import bootstrap
from fl_chain.config import RunConfig
from fl_chain.protocol.reputation_model import ReputationParams
from fl_chain.wire.report import RoundReport, RunEntry, RunEvents


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


def run_demo(
    config: RunConfig,
    clients: int,
    home: Path,
    backend: str = "anvil",
    attacks: dict[int, dict] | None = None,
    on_entry: Callable[[RunEntry], None] | None = None,
    plot: bool = True,
    reputation_params: ReputationParams | None = None,
    validators: int = 0,
    local: bootstrap.LocalDeployment | None = None,
    progress: Callable[[int, int], None] | None = None,
    post_claims: bool = False,
) -> DemoResult:
    """Run the demo; `home` receives the deployment file, the store, rounds.jsonl and the plot.
    With `local` (a chain started by `bootstrap.start_local(home, ...)`), the run uses that chain and
    leaves it running, so its ledger can be read afterwards; otherwise the demo's own chain is stopped.
    `progress(done, total)` is called while the nodes are registered (bootstrap.register_nodes).
    `post_claims`: the simulated nodes post their verified-round claims on-chain (ModelLedger.postClaim)."""
    _fresh_home(home)
    own_chain = local is None
    if local is None:
        local = bootstrap.start_local(home, backend, reputation_params=reputation_params)
    try:
        client = local.client
        nodes = bootstrap.register_nodes(client, clients, progress=progress)
        validation = start_validators(client, validators, config) if validators else None
        if validators:
            config.federation.wait_finalized = config.federation.wait_finalized or 120.0
        config.chain.deployment = str(home / "deployment.json")
        config.federation.min_nodes = min(config.federation.min_nodes, clients)
        events = RunEvents(home / "rounds.jsonl", on_entry)
        try:
            keys = [bootstrap.hex_key(n) for n in nodes]
            simulate(config, home, events, keys, attacks or {}, validators > 0, post_claims)
        finally:
            if validation is not None:
                validation.stop()
        result = _demo_result(client, home, events, [n.address for n in nodes], validation)
        _write_result(result)
        if plot and result.reports:
            result.plot = plot_accuracy(result.reports, home / "accuracy.png")
        return result
    finally:
        if own_chain:
            local.stop()
        _stop_ray()


def _fresh_home(home: Path) -> None:
    """Create `home` and remove what an earlier run left there that this one would mix with."""
    home.mkdir(parents=True, exist_ok=True)
    for stale in ("rounds.jsonl", "store"):
        target = home / stale
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def _demo_result(
    client: ChainClient,
    home: Path,
    events: RunEvents,
    nodes: list[str],
    validation: ValidatorThreads | None,
) -> DemoResult:
    """What the run left: its round reports, and the task and its rounds as the chain has them."""
    task = ledger.task_count(client)
    return DemoResult(
        reports=events.rounds,
        task=task,
        home=home,
        deployment=home / "deployment.json",
        nodes=nodes,
        chain_rounds=ledger.round_count(client, task) if task else 0,
        extra={
            "attestations": validation.attested if validation else [],
            "quorum": quorum.quorum(client) if validation else 0,
        },
    )


def simulate(
    config: RunConfig,
    home: Path,
    events: RunEvents,
    keys: list[str],
    attacks: dict[int, dict],
    finalized_only: bool,
    post_claims: bool = False,
) -> None:
    """One run of the flchain ServerApp and ClientApp on Flower's Simulation Engine, one node per key."""
    from flwr.simulation import run_simulation

    from fl_chain.coordinator.server_app import make_server_app
    from fl_chain.experiments.attacking_client import make_attacking_client_app
    from fl_chain.node.client_app import SimulatedNodes, make_client_app
    from fl_chain.wire.node_config import NodeConfig

    nodes = SimulatedNodes(
        NodeConfig(
            deployment=Path(config.chain.deployment),
            partitioning=config.task.partitioning,
            alpha=config.task.alpha,
            data_seed=config.task.seed,
            task=config.task.name,
            finalized_only=finalized_only,
            post_claims=post_claims,
        ),
        keys,
        attacks,
    )
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    run_simulation(
        server_app=make_server_app(config, home, events, _collusion(keys, attacks)),
        client_app=make_attacking_client_app(nodes) if attacks else make_client_app(nodes),
        num_supernodes=len(keys),
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}},
    )


def _collusion(keys: list[str], attacks: dict[int, dict]):
    """A Grid wrapper for coordinated attacks (ALIE, IPM, Min-Max, Min-Sum) among the simulated nodes,
    or None."""
    from fl_chain.experiments.attacks import COORDINATED

    colluders = {
        Account.from_key(keys[pid]).address: a for pid, a in attacks.items() if a.get("kind") in COORDINATED
    }
    if not colluders:
        return None
    from fl_chain.experiments.collusion import CollusionGrid

    return lambda grid: CollusionGrid(grid, colluders)


def _write_result(result: DemoResult) -> None:
    data = {"task": result.task, "nodes": result.nodes, "reports": [asdict(r) for r in result.reports]}
    (result.home / "demo-result.json").write_text(json.dumps(data, indent=1))


class ValidatorThreads:
    """In-process validators for the demo: one watcher loop attesting for every validator key."""

    def __init__(self, workers: list) -> None:
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
                for worker in self.workers:  # rounds whose data was unavailable a moment ago
                    self.attested += [d for d in worker.retry() if not isinstance(d, Exception)]
            except Exception as exc:  # reported, and the loop goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(0.2)

    def stop(self) -> None:
        """Stop the loop and wait for it."""
        self._stop.set()
        self.thread.join(timeout=10)


def start_validators(client: ChainClient, count: int, config: RunConfig) -> ValidatorThreads:
    """Create, fund and authorise `count` validator keys and start attesting."""
    from fl_chain.tasks import load_task
    from fl_chain.verify.validator import Validator, task_accuracy

    task = load_task(config.task.name)
    held_out = task.server_data(config.task.seed)[1]
    accuracy_of = task_accuracy(task.build_model, held_out)
    accounts = bootstrap.new_validators(client, count)
    return ValidatorThreads([Validator(client, account, accuracy_of) for account in accounts])


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
