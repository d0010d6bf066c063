"""Validation quorum: attestation rules (custom errors), finalization at the quorum, and a validator
that reacts to commits through the ChainWatcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from fl_chain.chain.client import role_id
from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task
from fl_chain.chain.watcher import ChainWatcher
from fl_chain.errors import FlchainError
from fl_chain.store import ModelStore
from fl_chain.tasks.digits import build_model, server_data
from fl_chain.tasks.training import get_arrays
from fl_chain.verify.validator import Validator, task_accuracy
from tests.chainutil import LocalChain, home_with_deployment


def _validators(chain: LocalChain, count: int) -> list:
    accounts = [Account.create() for _ in range(count)]
    for a in accounts:
        chain.client.fund(chain.admin, a.address, 10**18)
        chain.client.transact(
            chain.admin, chain.client.validation.functions.grantRole(role_id("VALIDATOR_ROLE"), a.address)
        )
    return accounts


def test_attestation_rules_and_quorum(chain: LocalChain) -> None:
    client = chain.client
    val = client.validation.functions
    task = create_task(client, chain.coordinator, b"\x01" * 32, "")
    h = b"\x0a" * 32
    commit_round(client, chain.coordinator, task, 0, h, "", ZERO_HASH, {})
    v1, v2 = _validators(chain, 2)
    outsider = Account.create()
    client.fund(chain.admin, outsider.address, 10**18)
    with pytest.raises(FlchainError, match="InvalidQuorum"):
        client.transact(chain.admin, val.setQuorum(0))
    client.transact(chain.admin, val.setQuorum(2))
    with pytest.raises(FlchainError, match="lacks VALIDATOR_ROLE"):
        client.transact(outsider, val.attest(task, 0, h, 900_000))
    with pytest.raises(FlchainError, match="lacks DEFAULT_ADMIN_ROLE"):
        client.transact(v1, val.setQuorum(1))
    with pytest.raises(FlchainError, match="WrongHash"):
        client.transact(v1, val.attest(task, 0, b"\x0b" * 32, 900_000))
    with pytest.raises(FlchainError, match="UnknownRound"):
        client.transact(v1, val.attest(task, 1, h, 900_000))
    with pytest.raises(FlchainError, match="NothingFinalized"):
        client.call(val.latestFinalized(task))
    client.transact(v1, val.attest(task, 0, h, 900_000))
    assert not val.isFinalized(task, 0).call() and val.attestations(task, 0).call() == 1
    with pytest.raises(FlchainError, match="AlreadyAttested"):
        client.transact(v1, val.attest(task, 0, h, 900_000))
    receipt = client.transact(v2, val.attest(task, 0, h, 910_000))
    assert client.events(client.validation, "RoundFinalized", receipt) == [
        {"task": task, "round": 0, "modelHash": h, "attestations": 2}
    ]
    assert val.isFinalized(task, 0).call() and val.latestFinalized(task).call() == 0


def test_validator_attests_commits_it_sees_through_the_watcher(chain: LocalChain, tmp_path: Path) -> None:
    client = chain.client
    store = ModelStore(tmp_path / "store")
    (account,) = _validators(chain, 1)
    (x_test, y_test) = server_data(0)[1]
    validator = Validator(client, account, task_accuracy(build_model, (x_test, y_test)))
    watcher = ChainWatcher(client, tmp_path / "cursor.json")
    watcher.poll()
    task = create_task(client, chain.coordinator, b"\x02" * 32, store.base_uri)
    digest, _ = store.put_arrays(get_arrays(build_model(0)))
    commit_round(client, chain.coordinator, task, 0, digest, "", ZERO_HASH, {})
    attested = [a for a in map(validator.handle, watcher.poll()) if a is not None]
    assert len(attested) == 1 and attested[0].round == 0 and 0.0 <= attested[0].accuracy <= 0.3
    assert client.validation.functions.isFinalized(task, 0).call()  # quorum 1
    kinds = [e.kind for e in watcher.poll()]  # the watcher delivers the attestation and the finalization
    assert "attestation" in kinds and "round_finalized" in kinds
    assert [a for a in map(validator.handle, watcher.poll()) if a is not None] == []  # nothing twice
    # A tampered blob is refused: nothing is attested.
    digest1, _ = store.put_arrays({k: v + 1 for k, v in get_arrays(build_model(0)).items()})
    store.local_path(digest1).write_bytes(b"corrupt")
    commit_round(client, chain.coordinator, task, 1, digest1, "", digest, {})
    with pytest.raises(FlchainError, match="tampered"):
        [validator.handle(e) for e in watcher.poll()]
    assert not client.validation.functions.hasAttested(task, 1, account.address).call()
    assert np.isfinite(attested[0].accuracy)


def test_validator_and_pull_finalized_through_the_cli(
    chain: LocalChain, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fl_chain.chain.identity import write_keystore
    from fl_chain.cli import run

    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", "pw")
    home = home_with_deployment(chain, tmp_path)
    h = ["--home", str(home)]
    key = tmp_path / "validator.json"
    address = write_keystore(key, "pw")
    chain.client.fund(chain.admin, address, 10**18)
    assert run(["validator", "--key", str(key), "--once", *h]) == 1
    assert "lacks VALIDATOR_ROLE" in capsys.readouterr().err
    assert run(["node", "validator-role", address, *h]) == 0

    client, store = chain.client, ModelStore(tmp_path / "store")
    task = create_task(client, chain.coordinator, b"\x03" * 32, store.base_uri)
    digest, _ = store.put_arrays(get_arrays(build_model(0)))
    commit_round(client, chain.coordinator, task, 0, digest, "", ZERO_HASH, {})
    assert run(["pull", "--finalized", "--task", str(task), *h]) == 1
    assert "NothingFinalized" in capsys.readouterr().err
    assert run(["validator", "--key", str(key), "--once", *h]) == 0
    assert f"attested task {task} round 0" in capsys.readouterr().out
    target = tmp_path / "final.safetensors"
    assert run(["pull", "--finalized", "--task", str(task), "--out", str(target), *h]) == 0
    assert target.exists() and "round 0" in capsys.readouterr().out

    # A round of a user task (another architecture) is evaluated with that task's model and data.
    from tests.user_task import build_model as user_model

    user_task = create_task(client, chain.coordinator, b"\x06" * 32, store.base_uri)
    digest, _ = store.put_arrays(get_arrays(user_model(0)))
    commit_round(client, chain.coordinator, user_task, 0, digest, "", ZERO_HASH, {})
    args = ["validator", "--key", str(key), "--task-spec", "tests.user_task:TASK", "--task", str(user_task)]
    assert run([*args, "--once", *h]) == 0
    assert f"attested task {user_task} round 0" in capsys.readouterr().out


def test_finalized_only_client_refuses_unfinalized_models(chain: LocalChain) -> None:
    from fl_chain.chain.quorum import require_finalized

    client = chain.client
    task = create_task(client, chain.coordinator, b"\x04" * 32, "")
    commit_round(client, chain.coordinator, task, 0, b"\x0c" * 32, "", ZERO_HASH, {})
    with pytest.raises(FlchainError, match=r"round 0 of task \d+ is not finalized \(0 of 1 attestations\)"):
        require_finalized(client, task, 0)
    (v,) = _validators(chain, 1)
    client.transact(v, client.validation.functions.attest(task, 0, b"\x0c" * 32, 1))
    require_finalized(client, task, 0)
