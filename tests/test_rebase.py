"""A federation recovers from one disputed round (issue 24, point 6): the coordinator rebases the task on
its newest finalized round (ModelLedger.rebase, allowed only once the validator quorum disputed the newest
round and for a finalized earlier one) and the next round builds on that model. Before: every later round
had to descend from the disputed model (ParentMismatch otherwise), so nodes that train only from
finalized models refused every round for good. Real anvil, the coordinator's own RoundCommitter, the
node's finality check and `flchain audit`'s parent chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain import ledger, quorum
from fl_chain.chain.setup import bootstrap
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.store import ModelStore
from fl_chain.verify.audit import audit_task
from tests.chainutil import LocalChain


def _model(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((3, 2), value, dtype=np.float32)}


def test_a_disputed_round_is_rebased_on_the_newest_finalized_model(chain: LocalChain, tmp_path: Path) -> None:
    client = chain.client
    validator = bootstrap.new_validators(client, 1)[0]  # quorum 1: one validator decides
    committer = RoundCommitter.new_task(
        client, chain.coordinator, ModelStore(tmp_path / "store"), b"\x07" * 32
    )
    task = committer.task
    for rnd in range(3):
        commit = committer.commit(rnd, _model(float(rnd)))
        if rnd < 2:
            quorum.attest(client, validator, task, rnd, commit.model_hash, 900_000)
    assert committer.rebase_if_disputed() is None  # round 2 is not disputed: the parent stands
    with pytest.raises(FlchainError, match=rf"NotDisputed\(task={task}, round=2\)"):
        ledger.rebase(client, chain.coordinator, task, 1)

    quorum.dispute(client, validator, task, 2, b"", "round 2 does not re-derive")
    with pytest.raises(FlchainError, match=rf"NotFinalized\(task={task}, round=2\)"):
        ledger.rebase(client, chain.coordinator, task, 2)  # not onto the disputed round itself
    stranger = bootstrap.new_validators(client, 1)[0]
    with pytest.raises(FlchainError, match=r"AccessControl|NotTaskOwner"):
        ledger.rebase(client, stranger, task, 1)

    rebased = committer.rebase_if_disputed()
    assert rebased is not None and rebased[0] == 1
    assert hash_arrays(rebased[1]) == hash_arrays(_model(1.0))  # the model to train from: round 1's
    assert committer.rebase_if_disputed() is rebased  # asked again before the commit: the same answer
    quorum.require_finalized(client, task, 1)  # what a --finalized-only node checks: it trains again

    committer.commit(3, _model(3.0))
    assert ledger.parent_round(client, task, 3) == 1 and ledger.parent_round(client, task, 2) == 1
    assert ledger.rebases(client, task) == {3: 1}
    events = ledger.commit_events(client, task, 3)
    assert bytes(events[0]["args"]["parentHash"]) == ledger.get_round(client, task, 1).model_hash
    chain_checks = [f for f in audit_task(client, task) if f.check == "parent chain"]
    assert len(chain_checks) == 4 and all(f.ok for f in chain_checks), chain_checks

    # The rebase held for round 3 only: round 4 builds on round 3 again, and never on round 1.
    with pytest.raises(FlchainError, match="ParentMismatch"):
        ledger.commit_round(
            client,
            chain.coordinator,
            task,
            4,
            b"\x44" * 32,
            "",
            ledger.get_round(client, task, 1).model_hash,
            {},
        )
    assert committer.rebase_if_disputed() is None
    committer.commit(4, _model(4.0))
    assert ledger.parent_round(client, task, 4) == 3
