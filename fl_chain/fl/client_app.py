"""The ClientApp: proves its Ethereum identity, checks the model it is given against the chain, trains
on its own partition only and returns weights and metrics. Nothing but weights leaves the node.

Settings come from the SuperNode's node config (`NodeConfig`, written by `flchain client`) or, in
simulation, from the demo's `SimulatedNodes`; torch is imported only when training, so the identity
query stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_chain.chain import ledger, quorum, registry
from fl_chain.chain.client import ChainClient, open_chain
from fl_chain.chain.identity import resolve_account
from fl_chain.errors import FlchainError
from fl_chain.fl.auth import sign_challenge
from fl_chain.fl.node_config import NodeConfig
from fl_chain.fl.records import (
    AUTH_ACTION,
    AUTH_RECORD,
    CONFIG_LOCAL_STEPS,
    CONFIG_PARENT_ROUND,
    CONFIG_TASK_ID,
    WEIGHT_KEY,
    arrays_to_record,
    record_to_arrays,
)
from fl_chain.tasks.base import DataSpec


class ClientIdentity:
    """The node's key and its view of the chain (its own deployment file and RPC, not the server's)."""

    def __init__(self, settings: NodeConfig) -> None:
        self.chain: ChainClient = open_chain(settings.deployment, settings.rpc)
        self.account: LocalAccount = resolve_account(
            {}, "node", settings.key_path, private_key=settings.private_key
        )

    def require_active(self) -> None:
        """Refuse to work if this node's address is not active on-chain."""
        status = registry.status_of(self.chain, self.account.address)
        if status != "Active":
            raise FlchainError(
                f"node {self.account.address} is not active in the NodeRegistry (status {status}): "
                "apply with `flchain node apply` and ask the registrar to approve it"
            )


_IDENTITIES: dict[tuple, ClientIdentity] = {}


def identity_for(settings: NodeConfig) -> ClientIdentity:
    """Cached per process: a simulation actor serves many messages; a SuperNode's process serves one."""
    cache_key = (settings.deployment, settings.key_path, settings.private_key, settings.rpc)
    if cache_key not in _IDENTITIES:
        _IDENTITIES[cache_key] = ClientIdentity(settings)
    return _IDENTITIES[cache_key]


def answer_challenge(settings: NodeConfig, message: Message, context: Context) -> Message:
    """Sign the server's nonce bound to chain id, run id and this node's id."""
    identity = identity_for(settings)
    identity.require_active()
    nonce = str(message.content.config_records[AUTH_RECORD]["nonce"])
    chain_id = identity.chain.deployment.chain_id
    signature = sign_challenge(identity.account, chain_id, context.run_id, context.node_id, nonce)
    answer = ConfigRecord({"address": identity.account.address, "signature": signature})
    return Message(RecordDict({AUTH_RECORD: answer}), reply_to=message)


def starting_model(settings: NodeConfig, chain: ChainClient, config: ConfigRecord, received: dict) -> dict:
    """The model to train from: the received arrays verified against the on-chain hash of the parent
    round (or the committed blob itself), finalized by the validators if the node requires it."""
    task_id, parent_round = int(config[CONFIG_TASK_ID]), int(config[CONFIG_PARENT_ROUND])
    if settings.finalized_only:
        quorum.require_finalized(chain, task_id, parent_round)
    if settings.model_source == "store":
        return ledger.load_model(chain, task_id, parent_round)[1]
    ledger.verify_model(chain, task_id, parent_round, received)
    return received


def train_locally(settings: NodeConfig, message: Message, context: Context) -> Message:
    """Verify the model against the chain, train on the local partition, return weights + metrics."""
    from fl_chain.fl.attacks import active_attack, apply_attack
    from fl_chain.fl.training import get_arrays, set_arrays, train
    from fl_chain.tasks import load_task

    identity = identity_for(settings)
    identity.require_active()
    config = message.content.config_records["config"]
    arrays = starting_model(
        settings, identity.chain, config, record_to_arrays(message.content.array_records["arrays"])
    )
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
    round_number = int(config[CONFIG_PARENT_ROUND]) + 1
    if active_attack(settings.attack, round_number).get("kind") == "label-flip":
        y = y.max() - y  # every label mapped to another class, consistently
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
    updated = apply_attack(settings.attack, arrays, get_arrays(model), round_number)
    content = RecordDict(
        {
            "arrays": arrays_to_record(updated),
            "metrics": MetricRecord({WEIGHT_KEY: len(y), "train-loss": loss}),
        }
    )
    return Message(content, reply_to=message)


@dataclass(frozen=True)
class SimulatedNodes:
    """Simulation: shared settings, one private key (and optional attack) per partition id."""

    base: NodeConfig
    keys: list[str]
    attacks: dict[int, dict] = field(default_factory=dict)

    def for_context(self, context: Context) -> NodeConfig:
        """The settings of the simulated node this context belongs to."""
        pid = int(context.node_config.get("partition-id", 0))
        n = int(context.node_config.get("num-partitions", len(self.keys)))
        return self.base.for_partition(pid, n, private_key=self.keys[pid], attack=self.attacks.get(pid, {}))


def make_client_app(simulated: SimulatedNodes | None = None) -> ClientApp:
    """A ClientApp for simulated nodes, or (default) reading each node's settings from its node config."""
    app = ClientApp()

    def resolve(context: Context) -> NodeConfig:
        if simulated is None:
            return NodeConfig.from_node_config(dict(context.node_config))
        return simulated.for_context(context)

    @app.query(AUTH_ACTION)
    def query(message: Message, context: Context) -> Message:
        return answer_challenge(resolve(context), message, context)

    @app.train()
    def train_fn(message: Message, context: Context) -> Message:
        return train_locally(resolve(context), message, context)

    return app


# The Deployment Engine's entry point (`clientapp` in the app's pyproject): settings from node config.
app = make_client_app()
