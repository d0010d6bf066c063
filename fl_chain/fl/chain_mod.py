"""flchain as a Flower client mod: `ClientApp(mods=[flchain_mod])` gives any ClientApp the node's side
of the ledger. Before the app's own handler runs, the mod
- answers the coordinator's join challenge (the app needs no handler for it),
- refuses work while the node is not Active in the NodeRegistry,
- checks the task's identity (model architecture and app id) against the on-chain configHash, and the
  received model against the on-chain hash of the round it claims to continue;
and after a training handler returns, refuses to send a model that is not the task's architecture.
A refusal is an error reply with one line saying why (the coordinator reports it, the round goes on with
the others); the node's settings come from its node config (`flchain-deployment`, `flchain-key`, ...:
fl/node_config.py), so a plain `flower-supernode` works as well as `flchain client`."""

from __future__ import annotations

from collections.abc import Callable
from logging import ERROR

from eth_account.signers.local import LocalAccount
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common.constant import ErrorCode
from flwr.supercore import log

from fl_chain.chain import ledger, quorum, registry
from fl_chain.chain.client import ChainClient, open_chain
from fl_chain.chain.identity import resolve_account
from fl_chain.errors import FlchainError
from fl_chain.fl.auth import sign_challenge
from fl_chain.fl.node_config import NodeConfig
from fl_chain.fl.records import (
    AUTH_RECORD,
    CONFIG_PARENT_ROUND,
    CONFIG_TASK_ID,
    arrays_to_record,
    record_to_arrays,
)
from fl_chain.fl.task_identity import require_identity

Resolver = Callable[[Context], NodeConfig]


class NodeIdentity:
    """The node's key and its view of the chain (its own deployment file and RPC, not the server's)."""

    def __init__(self, settings: NodeConfig) -> None:
        if settings.key_path is None and settings.private_key is None:
            raise FlchainError(
                "node config has no 'flchain-key': give the node's keystore (its password in "
                "FLCHAIN_KEY_PASSWORD)"
            )
        self.chain: ChainClient = open_chain(settings.deployment, settings.rpc)
        self.account: LocalAccount = resolve_account(
            {}, "node", settings.key_path, private_key=settings.private_key
        )
        self._task_hashes: dict[int, bytes] = {}

    def require_active(self) -> None:
        """Refuse to work if this node's address is not active on-chain."""
        status = registry.status_of(self.chain, self.account.address)
        if status != "Active":
            raise FlchainError(
                f"node {self.account.address} is not active in the NodeRegistry (status {status}): "
                "apply with `flchain node apply` and ask the registrar to approve it"
            )

    def task_hash(self, task: int) -> bytes:
        """The task's on-chain configHash (fixed at creation, so read once per process)."""
        if task not in self._task_hashes:
            self._task_hashes[task] = ledger.task_config_hash(self.chain, task)
        return self._task_hashes[task]


_IDENTITIES: dict[tuple, NodeIdentity] = {}


def identity_for(settings: NodeConfig) -> NodeIdentity:
    """Cached per process: a simulation actor serves many messages; a SuperNode's process serves one."""
    cache_key = (settings.deployment, settings.key_path, settings.private_key, settings.rpc)
    if cache_key not in _IDENTITIES:
        _IDENTITIES[cache_key] = NodeIdentity(settings)
    return _IDENTITIES[cache_key]


def settings_from_node_config(context: Context) -> NodeConfig:
    """The node's settings from its SuperNode's node config."""
    return NodeConfig.from_node_config(dict(context.node_config))


def make_flchain_mod(
    resolve: Resolver = settings_from_node_config, app: str | Callable[[NodeConfig], str] = ""
) -> Mod:
    """A mod for nodes whose settings `resolve` finds; `app` is the app id the coordinator's
    ChainStrategy was given (part of the task's identity), or a function of the node's settings."""

    def flchain_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        kind = message.metadata.message_type
        try:
            settings = resolve(context)
            app_id = app(settings) if callable(app) else app
            if is_challenge(message):
                return answer_challenge(settings, message, context)
            identity = identity_for(settings)
            identity.require_active()
            if kind.startswith("train"):
                task = check_received_model(settings, identity, message, app_id)
                reply = call_next(message, context)
                check_reply_model(identity, task, reply, app_id)
                return reply
            return call_next(message, context)
        except FlchainError as exc:
            log(ERROR, "flchain: refused %s: %s", kind, exc)
            return Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"flchain: {exc}"), reply_to=message)

    return flchain_mod


flchain_mod: Mod = make_flchain_mod()


def is_challenge(message: Message) -> bool:
    """The coordinator's join challenge: a message holding the AUTH_RECORD and no model."""
    content = message.content
    return AUTH_RECORD in content.config_records and not content.array_records


def answer_challenge(settings: NodeConfig, message: Message, context: Context) -> Message:
    """Sign the server's nonce bound to chain id, run id and this node's id."""
    identity = identity_for(settings)
    identity.require_active()
    nonce = str(message.content.config_records[AUTH_RECORD]["nonce"])
    chain_id = identity.chain.deployment.chain_id
    signature = sign_challenge(identity.account, chain_id, context.run_id, context.node_id, nonce)
    answer = ConfigRecord({"address": identity.account.address, "signature": signature})
    return Message(RecordDict({AUTH_RECORD: answer}), reply_to=message)


def chain_config(message: Message) -> ConfigRecord:
    """The ConfigRecord carrying ChainStrategy's task id and parent round (any record name)."""
    for record in message.content.config_records.values():
        if CONFIG_TASK_ID in record and CONFIG_PARENT_ROUND in record:
            return record
    raise FlchainError(
        f"the training message carries no {CONFIG_TASK_ID!r}: the coordinator is not running ChainStrategy"
    )


def model_record(message: Message) -> tuple[str, ArrayRecord]:
    """The one ArrayRecord of a message, with its name."""
    records = list(message.content.array_records.items())
    if len(records) != 1:
        raise FlchainError(f"expected one ArrayRecord in the message, found {len(records)}")
    return records[0]


def check_received_model(settings: NodeConfig, identity: NodeIdentity, message: Message, app: str) -> int:
    """Verify the model to train from against the chain (or, with model_source = "store", replace it by
    the committed blob); returns the task id."""
    config = chain_config(message)
    task, parent_round = int(config[CONFIG_TASK_ID]), int(config[CONFIG_PARENT_ROUND])
    name, record = model_record(message)
    received = record_to_arrays(record)
    require_identity(identity.task_hash(task), received, app, "the received model")
    if settings.finalized_only:
        quorum.require_finalized(identity.chain, task, parent_round)
    if settings.model_source == "store":
        message.content[name] = arrays_to_record(ledger.load_model(identity.chain, task, parent_round)[1])
    else:
        ledger.verify_model(identity.chain, task, parent_round, received)
    return task


def check_reply_model(identity: NodeIdentity, task: int, reply: Message, app: str) -> None:
    """Refuse to send a trained model that is not the task's architecture (a node running another model)."""
    if reply.has_error():
        return
    _, record = model_record(reply)
    require_identity(identity.task_hash(task), record_to_arrays(record), app, "this node's trained model")
