"""The join handshake: a signature binds chain id, ModelLedger address, task, run id, node id and a
one-time nonce; a join answer signed for another ledger (or chain, task, run, node) is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from fl_chain.errors import FlchainError
from fl_chain.protocol.join import Challenges, JoinStatement, sign_statement

LEDGER = "0x" + "11" * 20
OTHER_LEDGER = "0x" + "22" * 20


def test_valid_answer_is_accepted_once() -> None:
    key = Account.create()
    challenges = Challenges(chain_id=31337, run_id=7, ledger=LEDGER)
    signature = sign_statement(key, challenges.issue(node_id=11))
    assert challenges.verify(11, key.address, signature) == (key.address, "")
    # The same answer again is a replay: the nonce was consumed.
    address, reason = challenges.verify(11, key.address, signature)
    assert address is None and "replayed" in reason


def test_replayed_signature_for_an_old_nonce_is_refused() -> None:
    key = Account.create()
    challenges = Challenges(31337, 7, LEDGER)
    old_signature = sign_statement(key, challenges.issue(11))
    challenges.issue(11)  # a new round of challenges replaces the old nonce
    address, reason = challenges.verify(11, key.address, old_signature)
    assert address is None and "not the claimed" in reason


def test_signature_from_another_run_chain_or_node_is_refused() -> None:
    key = Account.create()
    for changes in ({"chain_id": 1}, {"run_id": 8}, {"node_id": 12}):
        challenges = Challenges(31337, 7, LEDGER)
        signature = sign_statement(key, replace(challenges.issue(11), **changes))
        address, _ = challenges.verify(11, key.address, signature)
        assert address is None


def test_a_join_answer_signed_for_another_ledger_or_task_is_refused() -> None:
    """A SuperLink that relays one coordinator's challenge to a node, and the node's answer to the gate
    of another ModelLedger (or of another task on the same one), gets nothing: the statement names them."""
    key = Account.create()
    for changes in ({"ledger": OTHER_LEDGER}, {"task": 4}):
        gate = Challenges(31337, 7, LEDGER, task=3)
        relayed = replace(gate.issue(11), **changes)  # the same nonce, signed for the other ledger/task
        address, reason = gate.verify(11, key.address, sign_statement(key, relayed))
        assert address is None and "another ledger" in reason
    # the statement the node signs spells the ledger out
    assert f"ledger {LEDGER} | task 3" in Challenges(31337, 7, LEDGER, task=3).issue(11).text()


def test_signature_from_a_different_key_is_refused() -> None:
    registered, impostor = Account.create(), Account.create()
    challenges = Challenges(31337, 7, LEDGER)
    signature = sign_statement(impostor, challenges.issue(11))
    address, reason = challenges.verify(11, registered.address, signature)
    assert address is None and impostor.address in reason


def test_malformed_signature_is_refused() -> None:
    challenges = Challenges(31337, 7, LEDGER)
    challenges.issue(11)
    address, reason = challenges.verify(11, Account.create().address, "0x1234")
    assert address is None and reason.startswith("malformed signature")


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"nonce": "ab | run 9"}, "nonce"), ({"ledger": "0x12"}, "ledger"), ({"task": -1}, "task")],
)
def test_a_malformed_statement_is_never_signed(changes: dict, field: str) -> None:
    """A nonce that could make the statement read as another one, or a field out of form: refused."""
    statement = replace(JoinStatement(31337, LEDGER, 0, 7, 11, "a1" * 16), **changes)
    with pytest.raises(FlchainError, match=field):
        sign_statement(Account.create(), statement)
