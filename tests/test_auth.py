"""The join handshake: a signature binds chain id, run id, node id and a one-time nonce."""

from __future__ import annotations

from eth_account import Account

from fl_chain.protocol.join import Challenges, sign_challenge


def test_valid_answer_is_accepted_once() -> None:
    key = Account.create()
    challenges = Challenges(chain_id=31337, run_id=7)
    nonce = challenges.issue(node_id=11)
    signature = sign_challenge(key, 31337, 7, 11, nonce)
    assert challenges.verify(11, key.address, signature) == (key.address, "")
    # The same answer again is a replay: the nonce was consumed.
    address, reason = challenges.verify(11, key.address, signature)
    assert address is None and "replayed" in reason


def test_replayed_signature_for_an_old_nonce_is_refused() -> None:
    key = Account.create()
    challenges = Challenges(31337, 7)
    old = challenges.issue(11)
    old_signature = sign_challenge(key, 31337, 7, 11, old)
    challenges.issue(11)  # a new round of challenges replaces the old nonce
    address, reason = challenges.verify(11, key.address, old_signature)
    assert address is None and "not the claimed" in reason


def test_signature_from_another_run_chain_or_node_is_refused() -> None:
    key = Account.create()
    for chain_id, run_id, node_id in ((1, 7, 11), (31337, 8, 11), (31337, 7, 12)):
        challenges = Challenges(31337, 7)
        nonce = challenges.issue(11)
        signature = sign_challenge(key, chain_id, run_id, node_id, nonce)
        address, _ = challenges.verify(11, key.address, signature)
        assert address is None


def test_signature_from_a_different_key_is_refused() -> None:
    registered, impostor = Account.create(), Account.create()
    challenges = Challenges(31337, 7)
    nonce = challenges.issue(11)
    signature = sign_challenge(impostor, 31337, 7, 11, nonce)
    address, reason = challenges.verify(11, registered.address, signature)
    assert address is None and impostor.address in reason


def test_malformed_signature_is_refused() -> None:
    challenges = Challenges(31337, 7)
    challenges.issue(11)
    address, reason = challenges.verify(11, Account.create().address, "0x1234")
    assert address is None and reason.startswith("malformed signature")
