"""flchain's own ClientApp: the flchain mod (node/chain_mod.py) proves the node's Ethereum identity and
checks the model it is given against the chain; the app trains on its own partition only and returns
weights and metrics. Nothing but weights leaves the node.

Settings come from the SuperNode's node config (`NodeConfig`, written by `flchain client`) or, in
simulation, from the demo's `SimulatedNodes`; torch is imported only when training, so the identity
query stays fast. Experiments build their misbehaving clients on `make_client_app` with extra mods and
a data hook (fl_chain/experiments/attacking_client.py); nothing here knows of attacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from fl_chain.node.chain_mod import make_flchain_mod, settings_from_node_config
from fl_chain.protocol.task_identity import task_app_id
from fl_chain.tasks.base import DataSpec
from fl_chain.wire.node_config import NodeConfig
from fl_chain.wire.records import (
    CONFIG_LOCAL_STEPS,
    WEIGHT_KEY,
    arrays_to_record,
    record_to_arrays,
    trained_round,
)

# Rewrites a node's training data before it trains: (settings, round, x, y) -> (x, y). Experiments only.
DataHook = Callable[[NodeConfig, int, Any, Any], tuple[Any, Any]]


def train_locally(
    settings: NodeConfig, message: Message, context: Context, data_hook: DataHook | None = None
) -> Message:
    """Train on the local partition from the model the flchain mod verified; return weights + metrics."""
    from fl_chain.tasks import load_task
    from fl_chain.tasks.training import get_arrays, set_arrays, train

    config = message.content.config_records["config"]
    arrays = record_to_arrays(message.content.array_records["arrays"])
    task = load_task(settings.task)
    x, y = task.client_data(
        DataSpec(
            settings.partition_id,
            settings.num_partitions,
            settings.partitioning,
            settings.alpha,
            settings.data_seed,
            settings.data_path,
        )
    )
    if data_hook is not None:
        x, y = data_hook(settings, trained_round(config), x, y)
    model = task.build_model(0)
    set_arrays(model, arrays)
    loss = train(
        model,
        x,
        y,
        epochs=int(config.get("local-epochs", 1)),
        lr=float(config.get("lr", 0.05)),
        batch_size=int(config.get("batch-size", 32)),
        seed=int(config.get("seed", 0)) + settings.partition_id,
        proximal_mu=float(config.get("proximal-mu", 0.0)),
        steps=int(config[CONFIG_LOCAL_STEPS]) if CONFIG_LOCAL_STEPS in config else None,
    )
    content = RecordDict(
        {
            "arrays": arrays_to_record(get_arrays(model)),
            "metrics": MetricRecord({WEIGHT_KEY: len(y), "train-loss": loss}),
        }
    )
    return Message(content, reply_to=message)


# The most data partitions a simulation cuts a task's training split into: the digits' 1,258 training
# samples hold 100 partitions of >= 10 samples (the partitioner's minimum), not 1,000.
MAX_DATA_PARTITIONS = 100


@dataclass(frozen=True)
class SimulatedNodes:
    """Simulation: shared settings, one private key (and optional attack) per partition id.

    Up to `max_partitions` nodes each hold their own partition, as on a real federation. Beyond that
    (a scale run of 1,000 nodes on a small dataset) node i holds partition i mod max_partitions of a
    partitioning drawn with seed data_seed + i // max_partitions: every node still has a partition of
    the usual size, and two nodes hold the same samples only by chance, not as exact copies (which
    screening would rightly treat as copied updates)."""

    base: NodeConfig
    keys: list[str]
    attacks: dict[int, dict] = field(default_factory=dict)
    max_partitions: int = MAX_DATA_PARTITIONS

    def for_context(self, context: Context) -> NodeConfig:
        """The settings of the simulated node this context belongs to."""
        pid = int(context.node_config.get("partition-id", 0))
        n = int(context.node_config.get("num-partitions", len(self.keys)))
        key, attack = self.keys[pid], self.attacks.get(pid, {})
        if n <= self.max_partitions:
            return self.base.for_partition(pid, n, private_key=key, attack=attack)
        replica, part = divmod(pid, self.max_partitions)
        return self.base.for_partition(
            part,
            self.max_partitions,
            private_key=key,
            attack=attack,
            data_seed=self.base.data_seed + replica,
        )


def make_client_app(
    simulated: SimulatedNodes | None = None,
    outer_mods: Sequence[Mod] = (),
    data_hook: DataHook | None = None,
) -> ClientApp:
    """A ClientApp for simulated nodes, or (default) reading each node's settings from its node config.
    Identity, registration and model checks are the flchain mod's (node/chain_mod.py), as in any app.
    `outer_mods` run outside the flchain mod and `data_hook` rewrites the training data: experiments'
    simulated attackers (experiments/attacking_client.py), never an honest node."""

    def resolve(context: Context) -> NodeConfig:
        if simulated is None:
            return settings_from_node_config(context)
        return simulated.for_context(context)

    app = ClientApp(
        mods=[*outer_mods, make_flchain_mod(resolve, lambda settings: task_app_id(settings.task))]
    )

    @app.train()
    def train_fn(message: Message, context: Context) -> Message:
        return train_locally(resolve(context), message, context, data_hook)

    return app


# The Deployment Engine's entry point (`clientapp` in the app's pyproject): settings from node config.
app = make_client_app()
