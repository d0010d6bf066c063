"""The ClientApp: proves its Ethereum identity, checks the model it is given against the chain, trains
on its own partition only and returns weights and metrics. Nothing but weights leaves the node.

Settings come from the SuperNode's node config (Deployment Engine, written by `flchain client`) or from
the demo's simulation settings; torch is imported only when training, so the identity query stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_chain.chain.client import ChainClient, open_chain
from fl_chain.chain.identity import PASSWORD_ENV, load_key
from fl_chain.chain.ledger import get_round
from fl_chain.errors import FlchainError
from fl_chain.fl.auth import AUTH_RECORD, sign_challenge
from fl_chain.fl.strategy import CONFIG_PARENT_ROUND, CONFIG_TASK, arrays_to_record, record_to_arrays
from fl_chain.store import arrays_from_bytes, fetch_blob, hash_arrays
from fl_chain.tasks.base import DataSpec

AUTH_ACTION = "flchain_auth"


@dataclass
class ClientSettings:
    """Everything a ClientApp needs, independent of how it was started."""

    deployment: Path
    rpc: str | None = None
    key_path: Path | None = None
    private_key: str | None = None  # simulation only: the demo's throwaway keys
    partition_id: int = 0
    num_partitions: int = 1
    partitioning: str = "iid"
    alpha: float = 0.5
    data_seed: int = 42
    data_path: Path | None = None
    task: str = "digits"
    model_source: str = "message"  # "message": verify received arrays; "store": load the committed blob
    finalized_only: bool = False  # train only from models the validator quorum finalized
    attack: dict = field(default_factory=dict)


def settings_from_node_config(node_config: dict) -> ClientSettings:
    """ClientSettings from a SuperNode's --node-config (keys as written by `flchain client`)."""

    def opt(key: str) -> str | None:
        value = node_config.get(key)
        return str(value) if value not in (None, "") else None

    if opt("flchain-deployment") is None:
        raise FlchainError("node config has no 'flchain-deployment': start the node with `flchain client`")
    return ClientSettings(
        deployment=Path(str(node_config["flchain-deployment"])),
        rpc=opt("flchain-rpc"),
        key_path=Path(str(node_config["flchain-key"])) if opt("flchain-key") else None,
        partition_id=int(node_config.get("partition-id", 0)),
        num_partitions=int(node_config.get("num-partitions", 1)),
        partitioning=str(node_config.get("flchain-partitioning", "iid")),
        alpha=float(node_config.get("flchain-alpha", 0.5)),
        data_seed=int(node_config.get("flchain-data-seed", 42)),
        data_path=Path(str(node_config["flchain-data"])) if opt("flchain-data") else None,
        task=str(node_config.get("flchain-task", "digits")),
        model_source=str(node_config.get("flchain-model-source", "message")),
        finalized_only=bool(int(node_config.get("flchain-finalized-only", 0))),
    )


class ClientIdentity:
    """The node's key and its view of the chain (its own deployment file and RPC, not the server's)."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.chain: ChainClient = open_chain(settings.deployment, settings.rpc)
        self.account: LocalAccount = self._load_account()

    def _load_account(self) -> LocalAccount:
        if self.settings.private_key:
            return Account.from_key(self.settings.private_key)
        if self.settings.key_path is None:
            raise FlchainError("no node key configured (flchain-key)")
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise FlchainError(f"{PASSWORD_ENV} is not set for keystore {self.settings.key_path}")
        return load_key(self.settings.key_path, password)

    def require_active(self) -> None:
        """Refuse to work if this node's address is not active on-chain."""
        status = self.chain.node_status(self.account.address)
        if status != "Active":
            raise FlchainError(
                f"node {self.account.address} is not active in the NodeRegistry (status {status}): "
                "apply with `flchain node apply` and ask the registrar to approve it"
            )


_IDENTITIES: dict[str, ClientIdentity] = {}


def identity_for(settings: ClientSettings) -> ClientIdentity:
    """Cached per process: a simulation actor serves many messages; a SuperNode's process serves one."""
    cache_key = f"{settings.deployment}|{settings.key_path}|{settings.private_key}|{settings.rpc}"
    if cache_key not in _IDENTITIES:
        _IDENTITIES[cache_key] = ClientIdentity(settings)
    return _IDENTITIES[cache_key]


def load_committed_model(chain: ChainClient, task: int, round_number: int) -> dict:
    """The model committed for a round, fetched by its on-chain URI and verified against its hash."""
    record = get_round(chain, task, round_number)
    return arrays_from_bytes(fetch_blob(record.uri, record.model_hash))


def verify_received(chain: ChainClient, task: int, round_number: int, arrays: dict) -> None:
    """Refuse a model that is not the one committed on-chain for `round_number`."""
    expected = get_round(chain, task, round_number).model_hash
    actual = hash_arrays(arrays)
    if actual != expected:
        raise FlchainError(
            f"received model does not match round {round_number} of task {task} on-chain: "
            f"expected hash 0x{expected.hex()}, got 0x{actual.hex()}"
        )


def require_finalized(chain: ChainClient, task: int, round_number: int) -> None:
    """Refuse to train from a model the validator quorum has not finalized."""
    if chain.validation is None:
        raise FlchainError("finalized-only training needs a deployment with the ValidationQuorum contract")
    if not chain.validation.functions.isFinalized(task, round_number).call():
        count = chain.validation.functions.attestations(task, round_number).call()
        quorum = chain.validation.functions.quorum().call()
        raise FlchainError(
            f"round {round_number} of task {task} is not finalized ({count} of {quorum} attestations): "
            "refusing to train from it"
        )


def answer_challenge(settings: ClientSettings, message: Message, context: Context) -> Message:
    """Sign the server's nonce bound to chain id, run id and this node's id."""
    identity = identity_for(settings)
    identity.require_active()
    nonce = str(message.content.config_records[AUTH_RECORD]["nonce"])
    chain_id = identity.chain.deployment.chain_id
    signature = sign_challenge(identity.account, chain_id, context.run_id, context.node_id, nonce)
    answer = ConfigRecord({"address": identity.account.address, "signature": signature})
    return Message(RecordDict({AUTH_RECORD: answer}), reply_to=message)


def train_locally(settings: ClientSettings, message: Message, context: Context) -> Message:
    """Verify the model against the chain, train on the local partition, return weights + metrics."""
    from fl_chain.fl.attacks import apply_attack
    from fl_chain.fl.training import get_arrays, set_arrays, train
    from fl_chain.tasks import load_task

    identity = identity_for(settings)
    identity.require_active()
    config = message.content.config_records["config"]
    task_id, parent_round = int(config[CONFIG_TASK]), int(config[CONFIG_PARENT_ROUND])
    received = record_to_arrays(message.content.array_records["arrays"])
    if settings.finalized_only:
        require_finalized(identity.chain, task_id, parent_round)
    if settings.model_source == "store":
        arrays = load_committed_model(identity.chain, task_id, parent_round)
    else:
        verify_received(identity.chain, task_id, parent_round, received)
        arrays = received

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
    if settings.attack.get("kind") == "label-flip":
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
        steps=int(config["local-steps"]) if "local-steps" in config else None,
    )
    updated = apply_attack(settings.attack, arrays, get_arrays(model))
    content = RecordDict(
        {
            "arrays": arrays_to_record(updated),
            "metrics": MetricRecord({"num-examples": len(y), "train-loss": loss}),
        }
    )
    return Message(content, reply_to=message)


def make_client_app(settings: ClientSettings | None = None) -> ClientApp:
    """A ClientApp with fixed settings (simulation), or reading them from the node config."""
    app = ClientApp()

    def resolve(context: Context) -> ClientSettings:
        if settings is None:
            return settings_from_node_config(dict(context.node_config))
        return _for_partition(settings, context)

    @app.query(AUTH_ACTION)
    def query(message: Message, context: Context) -> Message:
        return answer_challenge(resolve(context), message, context)

    @app.train()
    def train_fn(message: Message, context: Context) -> Message:
        return train_locally(resolve(context), message, context)

    return app


@dataclass
class SimulationSettings(ClientSettings):
    """Simulation: one private key (and optional attack) per partition id."""

    keys: list[str] = field(default_factory=list)
    attacks: dict[int, dict] = field(default_factory=dict)


def _for_partition(settings: ClientSettings, context: Context) -> ClientSettings:
    if not isinstance(settings, SimulationSettings):
        return settings
    pid = int(context.node_config.get("partition-id", 0))
    n = int(context.node_config.get("num-partitions", len(settings.keys)))
    return ClientSettings(
        deployment=settings.deployment,
        rpc=settings.rpc,
        private_key=settings.keys[pid],
        partition_id=pid,
        num_partitions=n,
        partitioning=settings.partitioning,
        alpha=settings.alpha,
        data_seed=settings.data_seed,
        task=settings.task,
        model_source=settings.model_source,
        finalized_only=settings.finalized_only,
        attack=settings.attacks.get(pid, {}),
    )


# The Deployment Engine's entry point (`clientapp` in the app's pyproject): settings from node config.
app = make_client_app()
