"""Proof-of-work registration: the contract verifies the work, rejects reuse and bad proofs with custom
errors, only the admin opens it; `flchain node apply --pow` mines and joins."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from eth_account import Account

from fl_chain.chain.identity import write_keystore
from fl_chain.chain.registry import status_of
from fl_chain.cli import run
from fl_chain.errors import FlchainError
from fl_chain.protocol.pow import difficulty_of, mine, target_for, work_hash
from tests.chainutil import LocalChain, home_with_deployment

CAPACITY = (2, 2048, 100)


def _funded(chain: LocalChain) -> Account:
    node = Account.from_key(secrets.token_bytes(32))
    chain.client.fund(chain.admin, node.address, 10**18)
    return node


def test_work_is_verified_bound_and_gated(chain: LocalChain) -> None:
    client = chain.client
    reg = client.registry.functions
    registry = client.registry.address
    node, other = _funded(chain), _funded(chain)
    difficulty = 256
    target = target_for(difficulty)
    nonce, _ = mine(client.deployment.chain_id, registry, node.address, target)
    assert int.from_bytes(work_hash(client.deployment.chain_id, registry, node.address, nonce)) < target
    assert reg.workHash(node.address, nonce).call() == work_hash(
        client.deployment.chain_id, registry, node.address, nonce
    )

    with pytest.raises(FlchainError, match="RegistrationClosed"):
        client.transact(node, reg.registerWithWork(CAPACITY, "", nonce))
    with pytest.raises(FlchainError, match="lacks DEFAULT_ADMIN_ROLE"):
        client.transact(node, reg.setOpenRegistration(True, target))
    receipt = client.transact(chain.admin, reg.setOpenRegistration(True, target))
    assert client.events(client.registry, "OpenRegistrationChanged", receipt) == [
        {"open": True, "target": target}
    ]
    assert difficulty_of(reg.powTarget().call()) == pytest.approx(difficulty, rel=1e-9)

    # The same nonce does not verify for another address (the proof is bound to the sender).
    bad = next(n for n in range(nonce, nonce + 10_000) if int.from_bytes(
        work_hash(client.deployment.chain_id, registry, other.address, n)) >= target)  # fmt: skip
    with pytest.raises(FlchainError, match="InsufficientWork"):
        client.transact(other, reg.registerWithWork(CAPACITY, "", bad))

    receipt = client.transact(node, reg.registerWithWork(CAPACITY, "tcp://node", nonce))
    assert status_of(client, node.address) == "Active"
    assert client.events(client.registry, "WorkAccepted", receipt)[0]["nonce"] == nonce
    assert client.reputation.functions.reputationOf(node.address).call() == 500_000  # enrolled
    # Reuse: the node cannot register again with the same (or any) proof.
    with pytest.raises(FlchainError, match="AlreadyRegistered"):
        client.transact(node, reg.registerWithWork(CAPACITY, "", nonce))
    with pytest.raises(FlchainError, match="InvalidCapacity"):
        client.transact(other, reg.registerWithWork((0, 0, 0), "", nonce))
    client.transact(chain.admin, reg.setOpenRegistration(False, target))
    with pytest.raises(FlchainError, match="RegistrationClosed"):
        client.transact(other, reg.registerWithWork(CAPACITY, "", nonce))


def test_apply_with_pow_through_the_cli(
    chain: LocalChain, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", "pw")
    home = home_with_deployment(chain, tmp_path)
    key = tmp_path / "node.json"
    write_keystore(key, "pw")
    h = ["--home", str(home)]
    assert run(["node", "apply", "--key", str(key), "--pow", "--samples-per-sec", "10", *h]) == 1
    assert "open registration is off" in capsys.readouterr().err
    assert run(["node", "open-registration", "--difficulty", "4096", *h]) == 0
    assert run(["node", "apply", "--key", str(key), "--pow", "--samples-per-sec", "10", *h]) == 0
    out = capsys.readouterr().out
    assert "4,096 hashes expected" in out and "found nonce" in out and "Active" in out
    address = "0x" + json.loads(key.read_text())["address"]
    assert status_of(chain.client, address) == "Active"
