"""flchain as a Flower client mod: `ClientApp(mods=[flchain_mod])` gives any ClientApp the node's side
of the ledger. Before the app's own handler runs, the mod
- answers the coordinator's join challenge (the app needs no handler for it),
- refuses work while the node is not Active in the NodeRegistry,
- checks the task's identity (model architecture and app id) against the on-chain configHash;
and after a training handler returns, checks the received model against the on-chain hash of the round
it claims to continue (hashed while the app trained; the round may land meanwhile: node/parent_check.py)
and refuses to send a model that is not the task's architecture.
A refusal is an error reply with one line saying why (the coordinator reports it, the round goes on with
the others); the node's settings come from its node config (`flchain-deployment`, `flchain-key`, ...:
wire/node_config.py), so a plain `flower-supernode` works as well as `flchain client`. Under `flchain client`
the mod holds no key: it asks the node's signing agent (node/signer.py), which signs only these two
statements for the node's own chain and ledger."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from logging import ERROR, WARNING
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common.constant import ErrorCode
from flwr.supercore import log

from fl_chain.chain.deployment import Deployment
from fl_chain.chain.identity import keystore_address
from fl_chain.chain.node_reads import NodeReads, NodeRoundView
from fl_chain.errors import FlchainError
from fl_chain.node.parent_check import ParentCheck
from fl_chain.node.signer import LocalSigner, Signer, agent_signer
from fl_chain.node.simulated_keys import keys_file, simulated_node_settings
from fl_chain.protocol.join import JoinStatement
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.task_identity import require_identity
from fl_chain.wire.node_config import NodeConfig
from fl_chain.wire.records import (
    AUTH_RECORD,
    CONFIG_PARENT_ROUND,
    CONFIG_TASK_ID,
    CONFIG_TICKET,
    UPDATE_RECORD,
    WEIGHT_KEY,
    arrays_to_record,
    record_views,
    trained_round,
)

if TYPE_CHECKING:
    from fl_chain.chain.client import ChainClient
    from fl_chain.protocol.update_signing import SignedUpdate

# Flower runs every message in a fresh process, so this module imports neither web3 nor eth-account:
# a training message costs one batched chain read (fl_chain/chain/node_reads.py) and one request to the
# signing agent; web3 is needed only for the opt-in finalized_only / model_source="store".

Resolver = Callable[[Context], NodeConfig]


class NodeIdentity:
    """The node's address and its view of the chain (its own deployment file and RPC, not the server's);
    whoever signs for it (`signer`) is found only when it has something to sign or to say who it is."""

    def __init__(self, settings: NodeConfig) -> None:
        self._agent = None if settings.private_key is not None else agent_signer()
        if settings.key_path is None and settings.private_key is None and self._agent is None:
            raise FlchainError(
                "node config has no 'flchain-key': start the node with `flchain client --key KEYSTORE`, or "
                "give flower-supernode the node's keystore (its password in FLCHAIN_KEY_PASSWORD)"
            )
        self.settings = settings
        deployment = Deployment.load(settings.deployment)
        self.reads = NodeReads(
            settings.rpc or deployment.rpc_url,
            deployment.chain_id,
            deployment.contracts["NodeRegistry"],
            deployment.contracts["ModelLedger"],
            str(settings.deployment),
        )
        self._signer: Signer | None = self._agent
        self._chain: ChainClient | None = None
        if self._agent is not None:
            self.address = self._agent.address  # also the agent's first check of this process
        elif settings.private_key is None and settings.key_path is not None:
            self.address = keystore_address(settings.key_path, checksum=False)
        else:
            self.address = self.signer.address

    @property
    def signer(self) -> Signer:
        """Who signs for the node: `flchain client`'s agent, else a key in this process (a simulated
        node's, or the keystore decrypted with FLCHAIN_KEY_PASSWORD on first use)."""
        if self._signer is None:
            from fl_chain.chain.identity import resolve_account

            account = resolve_account(
                {}, "node", self.settings.key_path, private_key=self.settings.private_key
            )
            self._signer = LocalSigner(account, lambda: self.chain)
        return self._signer

    @property
    def chain(self) -> ChainClient:
        """A web3 connection, for the opt-in checks that need more than NodeReads."""
        if self._chain is None:
            from fl_chain.chain.client import open_chain

            self._chain = open_chain(self.settings.deployment, self.settings.rpc)
        return self._chain

    def require_active(self, status: str | None = None) -> None:
        """Refuse to work if this node's address is not Active on-chain (`status` if already read)."""
        status = status if status is not None else self.reads.status(self.address)
        if status != "Active":
            raise FlchainError(
                f"node {self.address} is not active in the NodeRegistry (status {status}): "
                "apply with `flchain node apply` and ask the registrar to approve it"
            )


_IDENTITIES: dict[tuple, NodeIdentity] = {}


def identity_for(settings: NodeConfig) -> NodeIdentity:
    """Cached per process: a simulation actor serves many messages; a SuperNode's process serves one."""
    signer = agent_signer()
    agent = signer.path if signer is not None else None
    cache_key = (settings.deployment, settings.key_path, settings.private_key, settings.rpc, agent)
    if cache_key not in _IDENTITIES:
        _IDENTITIES[cache_key] = NodeIdentity(settings)
    return _IDENTITIES[cache_key]


def settings_from_node_config(context: Context) -> NodeConfig:
    """The node's settings from its SuperNode's node config; on the Simulation Engine, where nodes have
    no node config of their own, from the keys file the run config names (node/simulated_keys.py)."""
    node_config = dict(context.node_config)
    simulated = keys_file(context.run_config)
    if simulated is not None and "flchain-key" not in node_config:
        return simulated_node_settings(simulated, node_config, context.run_config)
    return NodeConfig.from_node_config(node_config)


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
            if kind.startswith("train"):
                expected, parent = check_received_model(settings, identity, message, app_id)
                reply = call_next(message, context)
                if parent is not None and not reply.has_error():  # the parent may land while it trains
                    parent.finish(identity.reads, identity.address, settings.parent_wait)
                sign_reply(identity, message, reply, check_reply_model(expected, reply, app_id))
                return reply
            identity.require_active()
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
    """Sign the join statement: the server's nonce bound to this node's chain, ledger, the task the
    challenge names, the run id and this node's id."""
    identity = identity_for(settings)
    identity.require_active()
    statement = join_statement(identity, message.content.config_records[AUTH_RECORD], context)
    signature = identity.signer.sign_join(statement)
    answer = ConfigRecord({"address": identity.signer.address, "signature": signature})
    return Message(RecordDict({AUTH_RECORD: answer}), reply_to=message)


def join_statement(identity: NodeIdentity, challenge: ConfigRecord, context: Context) -> JoinStatement:
    """The statement a challenge asks this node to sign, for the node's own chain and ledger: a challenge
    naming another chain or ledger is refused here, in one line, rather than answered for the wrong one."""
    reads = identity.reads
    for key, own in (("chain", reads.chain_id), ("ledger", reads.ledger)):
        asked = challenge.get(key)
        if asked is not None and str(asked).lower() != str(own).lower():
            raise FlchainError(
                f"the join challenge is for {key} {asked}, but this node's deployment "
                f"({identity.settings.deployment}) is {key} {own}"
            )
    task = challenge.get("task", 0)
    if not isinstance(task, int) or isinstance(task, bool):
        raise FlchainError("the join challenge's 'task' is not an integer")
    nonce = challenge.get("nonce")
    statement = JoinStatement(reads.chain_id, reads.ledger, task, context.run_id, context.node_id, nonce)
    return statement.checked()


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


def check_received_model(
    settings: NodeConfig, identity: NodeIdentity, message: Message, app: str
) -> tuple[bytes, ParentCheck | None]:
    """Check the node is Active and the model to train from is the task's architecture (one batched
    chain read), and begin checking it against the parent round's on-chain hash (finished before the
    reply: node/parent_check.py); or with model_source = "store" replace it by the committed blob (the
    parent must be on-chain then). Returns the task's configHash, which the reply is checked against,
    and the parent check under way (None when the model came from the store)."""
    config = chain_config(message)
    task, parent_round = int(config[CONFIG_TASK_ID]), int(config[CONFIG_PARENT_ROUND])
    name, record = model_record(message)
    received = record_views(record)  # read only: the architecture check and the hash; no copy
    view: NodeRoundView = identity.reads.round_view(identity.address, task, parent_round)
    identity.require_active(view.status)
    if view.config_hash is None:
        raise FlchainError(f"task {task} does not exist on-chain ({identity.settings.deployment})")
    require_identity(view.config_hash, received, app, "the received model")
    if view.model_hash is None and (settings.finalized_only or settings.model_source == "store"):
        raise FlchainError(f"round {parent_round} of task {task} is not committed on-chain")
    if settings.finalized_only:
        from fl_chain.chain import quorum

        quorum.require_finalized(identity.chain, task, parent_round)
    if settings.model_source == "store":
        from fl_chain.chain import ledger

        message.content[name] = arrays_to_record(ledger.load_model(identity.chain, task, parent_round)[1])
        return view.config_hash, None
    return view.config_hash, ParentCheck.start(task, parent_round, view.model_hash, received)


def check_reply_model(config_hash: bytes, reply: Message, app: str) -> dict[str, np.ndarray] | None:
    """Refuse to send a trained model that is not the task's architecture (a node running another model);
    the reply's arrays (None for an error reply), decoded once for this check and the signature."""
    if reply.has_error():
        return None
    _, record = model_record(reply)
    arrays = record_views(record)  # read only: the architecture check and the signature's hash
    require_identity(config_hash, arrays, app, "this node's trained model")
    return arrays


def sign_reply(
    identity: NodeIdentity, message: Message, reply: Message, arrays: Mapping[str, np.ndarray] | None = None
) -> None:
    """Attach the node's signature on the update it sends (protocol/update_signing.py): this update, with
    this weight, for this round of this task, on this chain and ledger. Anyone holding the update can
    check it; a coordinator that drops or reweights it cannot deny having received it. `arrays`: the
    reply's arrays if already decoded."""
    if reply.has_error():
        return
    config = chain_config(message)
    task, round_number = int(config[CONFIG_TASK_ID]), trained_round(config)
    if arrays is None:
        arrays = record_views(model_record(reply)[1])
    metrics = list(reply.content.metric_records.values())
    claimed = metrics[0].get(WEIGHT_KEY, 0) if len(metrics) == 1 else 0
    # A weight the coordinator will refuse anyway (negative, NaN, infinite, absurd) is signed as 0 rather
    # than failing the node here: the reply is judged on the coordinator's side, with its reason.
    plausible = isinstance(claimed, int | float) and math.isfinite(claimed) and 0 <= claimed < 2**63
    weight = int(claimed) if plausible else 0
    reads = identity.reads
    update_hash = hash_arrays(arrays)
    signed = identity.signer.sign_update(
        reads.chain_id, reads.ledger, task, round_number, update_hash, weight
    )
    reply.content[UPDATE_RECORD] = ConfigRecord(
        {"hash": "0x" + update_hash.hex(), "weight": weight, "signature": signed.signature}
    )
    from fl_chain.node.claims_file import record_claim

    # So that `flchain client` can find it in the round's manifest (node/inclusion.py), with the ticket it
    # needs to complain if it is missing.
    ticket = str(config.get(CONFIG_TICKET, ""))
    record_claim(signed, ticket)
    if identity.settings.post_claims and ticket:
        post_claim(identity, signed, ticket)


def post_claim(identity: NodeIdentity, signed: SignedUpdate, ticket: str) -> None:
    """Post the signed claim on-chain before the reply leaves (a verified round's train message carries
    the coordinator's ticket): once the round commits, omitting this node or recording it missed gets the
    round disputed. A failed post is a one-line warning; the reply is still sent."""
    try:
        identity.signer.post_claim(signed, ticket)
    except FlchainError as exc:
        log(WARNING, "flchain: claim for round %s of task %s not posted: %s", signed.round, signed.task, exc)
