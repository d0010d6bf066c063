"""The flchain client mod (node/chain_mod.py) in front of a user's train function, against a real anvil
chain: what reaches the user's code, and the one-line refusals for everything that must not; under
`flchain client` the mod signs through the node's signing agent and holds no key."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from fl_chain.coordinator.ledger_session import LedgerSession
from fl_chain.node.chain_mod import make_flchain_mod, settings_from_node_config
from fl_chain.protocol.join import Challenges, JoinStatement
from fl_chain.protocol.task_identity import identity_hash
from fl_chain.store import ModelStore
from fl_chain.wire.node_config import NodeConfig
from fl_chain.wire.records import (
    AUTH_MESSAGE_TYPE,
    AUTH_RECORD,
    CONFIG_PARENT_ROUND,
    CONFIG_TASK_ID,
    UPDATE_RECORD,
    arrays_to_record,
)
from tests.chainutil import LocalChain, home_with_deployment, new_nodes
from tests.conftest import flower_server_identity

APP = "myapp/1.0"
RUN_ID, NODE_ID = 5, 42
MODEL = {"conv.weight": np.ones((2, 1, 3, 3), np.float32), "fc.bias": np.zeros(3, np.float32)}


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """Messages built in this test carry a ServerApp identity, as Flower's runtime would give them."""
    with flower_server_identity(RUN_ID):
        yield


class UserTrain:
    """The user's train function: records that it ran and returns `model` (default: what it got)."""

    def __init__(self, model: dict[str, np.ndarray] | None = None) -> None:
        self.calls = 0
        self.model = model

    def __call__(self, message: Message, context: Context) -> Message:
        self.calls += 1
        arrays = self.model if self.model is not None else MODEL
        metrics = MetricRecord({"num-examples": 10})
        return Message(RecordDict({"arrays": arrays_to_record(arrays), "metrics": metrics}), reply_to=message)


@pytest.fixture()
def task(chain: LocalChain, tmp_path: Path) -> int:
    """A task whose round 0 is MODEL, created the way a user's ServerApp does (LedgerSession)."""
    session = LedgerSession(chain.client, chain.coordinator, ModelStore(tmp_path / "store"))
    committer, _ = session.open_task(MODEL, APP)
    return committer.task


def _context(node_config: dict | None = None) -> Context:
    return Context(RUN_ID, NODE_ID, node_config or {}, RecordDict(), {})


def _train_message(task: int, arrays: dict[str, np.ndarray], parent_round: int = 0) -> Message:
    config = ConfigRecord({CONFIG_TASK_ID: task, CONFIG_PARENT_ROUND: parent_round, "lr": 0.1})
    content = RecordDict({"arrays": arrays_to_record(arrays), "config": config})
    return Message(content, dst_node_id=NODE_ID, message_type="train")


def _mod_for(chain: LocalChain, tmp_path: Path, private_key: str, app: str = APP, parent_wait: float = 60.0):
    deployment = home_with_deployment(chain, tmp_path) / "deployment.json"
    settings = NodeConfig(deployment=deployment, private_key=private_key, parent_wait=parent_wait)
    return make_flchain_mod(lambda context: settings, app)


def test_an_active_node_with_the_task_model_reaches_the_user_code(
    chain: LocalChain, tmp_path: Path, task: int
) -> None:
    node = new_nodes(chain, 1)[0]
    mod, user = _mod_for(chain, tmp_path, node.key.hex()), UserTrain()
    reply = mod(_train_message(task, MODEL), _context(), user)
    assert user.calls == 1 and not reply.has_error()


def _gate(chain: LocalChain, task: int, ledger: str | None = None) -> Challenges:
    """The coordinator's side of the handshake for this chain's (or another) ledger and `task`."""
    return Challenges(chain.client.deployment.chain_id, RUN_ID, ledger or chain.client.ledger.address, task)


def _challenge(statement: JoinStatement) -> Message:
    """The gate's challenge message for a statement (coordinator/gate.py)."""
    asked = {"nonce": statement.nonce, "chain": statement.chain_id, "ledger": statement.ledger}
    return Message(
        RecordDict({AUTH_RECORD: ConfigRecord({**asked, "task": statement.task})}),
        dst_node_id=NODE_ID,
        message_type=AUTH_MESSAGE_TYPE,
    )


def test_the_join_challenge_is_answered_by_the_mod_alone(
    chain: LocalChain, tmp_path: Path, task: int
) -> None:
    node = new_nodes(chain, 1)[0]
    mod, user = _mod_for(chain, tmp_path, node.key.hex()), UserTrain()
    gate = _gate(chain, task)
    answer = mod(_challenge(gate.issue(NODE_ID)), _context(), user).content.config_records[AUTH_RECORD]
    assert user.calls == 0
    assert answer["address"] == node.address
    assert gate.verify(NODE_ID, answer["address"], answer["signature"]) == (node.address, "")


def test_a_challenge_for_another_ledger_is_refused_by_the_node(
    chain: LocalChain, tmp_path: Path, task: int
) -> None:
    """A SuperLink relaying another ledger's challenge gets a one-line refusal, not a signature."""
    node = new_nodes(chain, 1)[0]
    mod = _mod_for(chain, tmp_path, node.key.hex())
    other = _gate(chain, task, ledger="0x" + "77" * 20).issue(NODE_ID)
    reason = _refusal(mod(_challenge(other), _context(), UserTrain()))
    assert "the join challenge is for ledger 0x" + "77" * 20 in reason


def _refusal(reply: Message) -> str:
    assert reply.has_error()
    reason = str(reply.error.reason)
    assert "\n" not in reason and reason.startswith("flchain: ")
    return reason


def test_another_app_or_architecture_is_refused_naming_both_hashes(
    chain: LocalChain, tmp_path: Path, task: int
) -> None:
    node = new_nodes(chain, 1)[0]
    on_chain = "0x" + identity_hash(MODEL, APP).hex()
    user = UserTrain()
    other_app = _mod_for(chain, tmp_path, node.key.hex(), app="otherapp/2.0")
    reason = _refusal(other_app(_train_message(task, MODEL), _context(), user))
    assert on_chain in reason and "0x" + identity_hash(MODEL, "otherapp/2.0").hex() in reason
    # A node whose own model is another architecture: it trains, but never sends that model.
    bigger = {**MODEL, "fc.bias": np.zeros(4, np.float32)}
    mod = _mod_for(chain, tmp_path, node.key.hex())
    reason = _refusal(mod(_train_message(task, MODEL), _context(), UserTrain(bigger)))
    assert "this node's trained model does not match the task" in reason and on_chain in reason
    assert user.calls == 0


class CommitWhileTraining(UserTrain):
    """The user's train function, during which the coordinator's commit of the parent round lands (the
    coordinator overlaps round r's commit with round r+1's training: coordinator/commit_pipeline.py)."""

    def __init__(self, commit: Callable[[], object]) -> None:
        super().__init__()
        self.commit = commit

    def __call__(self, message: Message, context: Context) -> Message:
        self.commit()
        return super().__call__(message, context)


def test_the_parent_is_checked_before_the_reply_and_one_that_never_lands_is_refused(
    chain: LocalChain, tmp_path: Path
) -> None:
    """A node trains from a parent round not yet on-chain; it replies (signed) once the round lands while
    it trains, and refuses, signing nothing, when the round never lands within its parent_wait."""
    node = new_nodes(chain, 1)[0]
    session = LedgerSession(chain.client, chain.coordinator, ModelStore(tmp_path / "store"))
    committer, _ = session.open_task(MODEL, APP)
    task = committer.task
    mod = _mod_for(chain, tmp_path, node.key.hex(), parent_wait=0.5)
    pending = _train_message(task, MODEL, parent_round=1)
    user = UserTrain()
    reason = _refusal(mod(pending, _context(), user))
    assert user.calls == 1 and "round 1 of task " + str(task) + " is not committed on-chain" in reason
    assert "waited 0.5 s after training" in reason
    landing = CommitWhileTraining(lambda: committer.commit(1, MODEL))
    reply = mod(_train_message(task, MODEL, parent_round=1), _context(), landing)
    assert landing.calls == 1 and not reply.has_error() and UPDATE_RECORD in reply.content.config_records


def test_a_tampered_model_an_inactive_node_and_a_missing_key_are_refused(
    chain: LocalChain, tmp_path: Path, task: int
) -> None:
    node = new_nodes(chain, 1)[0]
    user = UserTrain()
    mod = _mod_for(chain, tmp_path, node.key.hex())
    tampered = {k: v + 1 for k, v in MODEL.items()}
    # Checked against the chain before the reply, not before training: the node trains, then refuses.
    assert "does not match round 0" in _refusal(mod(_train_message(task, tampered), _context(), user))
    assert user.calls == 1

    stranger = Account.create()  # a key this deployment never registered (e.g. another chain's)
    mod = _mod_for(chain, tmp_path, stranger.key.hex())
    assert "not active" in _refusal(mod(_train_message(task, MODEL), _context(), user))

    deployment = home_with_deployment(chain, tmp_path) / "deployment.json"
    keyless = make_flchain_mod(settings_from_node_config, APP)
    context = _context({"flchain-deployment": str(deployment)})
    assert "no 'flchain-key'" in _refusal(keyless(_train_message(task, MODEL), context, user))
    assert "no 'flchain-deployment'" in _refusal(keyless(_train_message(task, MODEL), _context(), user))
    assert user.calls == 1  # none of these reached the user's code


def test_under_flchain_client_the_mod_signs_through_the_agent_and_holds_no_key(
    chain: LocalChain, tmp_path: Path, task: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mod in an app process of `flchain client`: no key, no password, no keystore in its settings;
    the join answer and the update claim come from the node's signing agent, for this ledger."""
    from fl_chain.chain.identity import DECRYPTED_KEY_ENV, PASSWORD_ENV
    from fl_chain.node.signer import SIGNER_ENV
    from fl_chain.protocol.model_bytes import hash_arrays
    from fl_chain.runners.signing_agent import SigningAgent
    from fl_chain.wire.records import UPDATE_RECORD

    node = new_nodes(chain, 1)[0]
    agent = SigningAgent(node, chain.client)
    agent.start()
    try:
        agent.admit(os.getpid(), RUN_ID, "ab" * 32)  # this test process plays the app process
        for name in (PASSWORD_ENV, DECRYPTED_KEY_ENV):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(SIGNER_ENV, str(agent.path))
        deployment = home_with_deployment(chain, tmp_path) / "deployment.json"
        mod = make_flchain_mod(lambda context: NodeConfig(deployment=deployment), APP)

        gate = _gate(chain, task)
        answer = mod(_challenge(gate.issue(NODE_ID)), _context(), UserTrain()).content.config_records[
            AUTH_RECORD
        ]
        assert gate.verify(NODE_ID, answer["address"], answer["signature"]) == (node.address, "")

        user = UserTrain()
        reply = mod(_train_message(task, MODEL), _context(), user)
        assert user.calls == 1 and not reply.has_error()
        claim = reply.content.config_records[UPDATE_RECORD]
        from fl_chain.protocol.update_signing import RoundContext, check_claim

        context = RoundContext(chain.client.deployment.chain_id, chain.client.ledger.address, task, 1)
        signed = check_claim(claim, context, node.address, hash_arrays(MODEL), 10)
        assert signed.signer() == node.address
    finally:
        agent.stop()
