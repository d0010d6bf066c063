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
from tests.verified_helpers import verified_demo_config


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


def test_a_verified_federation_with_finalized_only_nodes_continues_after_a_disputed_round(
    tmp_path: Path,
) -> None:
    """The Simulation Engine demo in verified mode: one honest validator (quorum 1) attests every round and
    the nodes train only from finalized models. Right after round 2 finalized, a second validator disputes
    it: round 3 is rebased on round 1, the nodes train from it, and rounds 3 and 4 commit and finalize.
    Before: round 3 built on the disputed round 2 and every node refused to train from it."""
    from fl_chain.demo import run_demo
    from fl_chain.wire.report import RoundReport

    config = verified_demo_config(4)
    home = tmp_path / "demo"
    home.mkdir()
    local = bootstrap.start_local(home, "anvil")
    try:
        rogue = bootstrap.new_validators(local.client, 1)[0]
        disputed: list[int] = []

        def dispute_round_2(entry: object) -> None:
            if isinstance(entry, RoundReport) and entry.round == 2:  # reported once finalized
                quorum.dispute(local.client, rogue, ledger.task_count(local.client), 2, b"", "rogue dispute")
                disputed.append(2)

        result = run_demo(config, 3, home, plot=False, validators=1, local=local, on_entry=dispute_round_2)
        client, task = local.client, result.task
        assert disputed == [2] and result.chain_rounds == 5
        assert quorum.is_disputed(client, task, 2)
        assert [quorum.is_finalized(client, task, r) for r in range(5)] == [True, True, False, True, True]
        assert ledger.rebases(client, task) == {3: 1}
        rebased = result.reports[3]  # every node trained round 3 from round 1's model and signed it
        assert len(rebased.participants) == 3 and not rebased.dropped and not rebased.refused, rebased
        assert all(not r.dropped for r in result.reports), result.reports
        assert all(f.ok for f in audit_task(client, task) if f.check == "parent chain")
    finally:
        local.stop()
