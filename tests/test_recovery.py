"""Reinstatement and recovery in commitment mode (issue 24, point 6), on a real anvil chain with a real
RoundCommitter and three validators (quorum 2): a registrar's re-approval lifts a checkpointed
suspension for good; a checkpoint finalizes only on a finalized base and one rejection does not wedge
the task; a revoked validator's votes stop counting; a change of the reputation parameters takes effect
from a stated block for the coordinator and the validators alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain import checkpoints, quorum, registry, reputation
from fl_chain.chain.published import Unavailable
from fl_chain.chain.setup import bootstrap
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.errors import FlchainError
from fl_chain.protocol.fixedpoint import SCALE
from fl_chain.protocol.reputation_fold import checkpoint_of
from fl_chain.store import ModelStore
from fl_chain.verify.audit import audit_task
from fl_chain.verify.validator import CheckpointVerdict, Validator
from tests.chainutil import new_nodes
from tests.test_commitment import SCORES, Task


@pytest.fixture()
def task(chain, tmp_path: Path) -> Task:
    """A commitment-mode task (round 0 committed), four approved nodes, three validators, quorum 2."""
    client = chain.client
    store = ModelStore(tmp_path / "store")
    committer = RoundCommitter.new_task(client, chain.coordinator, store, b"\x06" * 32, mode="commitment")
    model = {"w": np.zeros((3, 2), np.float32)}
    committer.commit(0, model)
    client.transact(chain.admin, quorum.quorum_contract(client).functions.setQuorum(2))
    validators = [
        Validator(client, account, lambda rnd, arrays: 0.5, task=committer.task)
        for account in bootstrap.new_validators(client, 3)
    ]
    return Task(committer, new_nodes(chain, 4), validators, store, model)


def _commit_without(task: Task, number: int, left_out: str):
    """Commit round `number` scoring every node but `left_out` (which the coordinator did not sample)."""
    task.model = {k: v + np.float32(0.01) for k, v in task.model.items()}
    scores = {n.address: SCORES[i] for i, n in enumerate(task.nodes) if n.address != left_out}
    return task.committer.commit(number, task.model, scores)


def _finalize(task: Task, number: int, checkpoint: int) -> list[CheckpointVerdict]:
    """Every validator judges round `number` and then the checkpoint; the checkpoint is finalized."""
    task.judge_round(number)
    verdicts = task.judge_checkpoint(checkpoint)
    assert checkpoints.get(task.client, checkpoint).finalized, verdicts
    return verdicts


def _leaf(task: Task, checkpoint: int, node: str):
    """The node's (node, reputation, active) leaf in a checkpoint the coordinator proposed, and its proof."""
    return task.committer.writer.book.proposed[checkpoint].proof_of(node)


def test_a_reapproved_node_stays_active_through_later_checkpoints(task: Task, chain) -> None:
    """Before: the fold reactivated a node only on a new outcome, and a suspended node is never sampled,
    so every later checkpoint still said (d, 125000, false), and anyone re-suspended d with the stale
    checkpoint's proof. Now the fold starts each round from the registrar's decision."""
    client, d = task.client, task.nodes[3].address
    _finalize(task, 1, task.commit(1, penalized=[d]).checkpoint)
    second = task.commit(2, penalized=[d])
    assert second.suspended == [d]
    _finalize(task, 2, second.checkpoint)
    assert registry.status_of(client, d) == "Suspended"  # the finalizing validator applied it
    stale, stale_proof = _leaf(task, second.checkpoint, d)
    assert stale[1:] == (125_000, False)

    registry.registrar_action(client, chain.admin, "approve", d)  # the registrar's decision
    assert registry.status_of(client, d) == "Active"
    with pytest.raises(FlchainError, match=r"ReinstatedSince"):  # the stale suspension is refused
        checkpoints.apply_suspension(client, task.nodes[0], task.task, d, stale[1], stale_proof)
    assert registry.status_of(client, d) == "Active"

    third = _commit_without(task, 3, d)  # d was held back when round 3 was sampled
    assert d.lower() not in task.committer.writer.book.suspended()  # sampled again from round 4 on
    assert _leaf(task, third.checkpoint, d)[0][1:] == (500_000, True)  # the starting reputation, Active
    verdicts = _finalize(task, 3, third.checkpoint)
    assert all(v.attested and not v.suspended for v in verdicts)
    fourth = task.commit(4)  # d takes part again
    _finalize(task, 4, fourth.checkpoint)
    leaf, proof = _leaf(task, fourth.checkpoint, d)
    assert leaf[2] and checkpoints.is_active(client, task.task, d, leaf[1], proof)
    assert registry.status_of(client, d) == "Active"
    assert not [f for f in audit_task(client, task.task) if not f.ok]


def test_only_the_registrar_lifts_a_suspension_from_the_fold(task: Task) -> None:
    """Before: any outcome of a node the fold held suspended reset it to the starting reputation, so a
    coordinator that sampled d before its suspension reached the registry (the checkpoint not final
    yet: d still Active there, so the round's leaves check) cleared it. Now d stays suspended."""
    client, d = task.client, task.nodes[3].address
    task.commit(1, penalized=[d])
    assert task.commit(2, penalized=[d]).suspended == [d]
    assert registry.status_of(client, d) == "Active"  # not applied: no checkpoint is finalized
    third = task.commit(3)  # d scored 0.1 as if nothing happened
    assert _leaf(task, third.checkpoint, d)[0][1:] == (125_000, False)
    assert d.lower() in task.committer.writer.book.suspended()
    for number in (1, 2, 3):
        task.judge_round(number)
    for checkpoint in (third.checkpoint - 2, third.checkpoint - 1, third.checkpoint):
        task.judge_checkpoint(checkpoint)
    assert checkpoints.get(client, third.checkpoint).finalized  # the validators fold it the same way
    assert registry.status_of(client, d) == "Suspended"


def test_a_checkpoint_on_an_unresolved_base_does_not_finalize(task: Task) -> None:
    """Before: attest checked only that the base was not rejected, so checkpoint 2 finalized while
    checkpoint 1 (its base) was still unresolved. Now attest refuses (BaseNotFinalized) and a validator
    keeps the checkpoint for retry."""
    client = task.client
    first = task.commit(1)
    second = task.commit(2)
    task.judge_round(1)
    task.judge_round(2)
    root = checkpoints.get(client, second.checkpoint).root
    with pytest.raises(FlchainError, match=r"BaseNotFinalized"):
        checkpoints.attest(client, task.validators[0].account, second.checkpoint, root)
    with pytest.raises(Unavailable, match=r"not finalized yet"):
        task.validators[1].judge_checkpoint(task.task, second.checkpoint)
    record = checkpoints.get(client, second.checkpoint)
    assert not record.finalized and record.attestations == 0
    task.judge_checkpoint(first.checkpoint)  # the base is finalized: now the checkpoint is
    verdicts = task.judge_checkpoint(second.checkpoint)
    assert all(v.attested for v in verdicts) and checkpoints.get(client, second.checkpoint).finalized
    assert checkpoints.latest(client, task.task).id == second.checkpoint


def test_after_a_rejection_a_new_proposal_finalizes(task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: each checkpoint built on the last proposed one even if it was rejected, so after one
    wrong checkpoint every later one was disputed ("folds from a rejected checkpoint") and the task's
    reputation was frozen. Now a rejection resets the task's next base to its latest finalized one."""
    client, a = task.client, task.nodes[0].address
    first = task.commit(1)
    _finalize(task, 1, first.checkpoint)
    real = checkpoint_of

    def inflated(model, *args):  # a coordinator bug (or lie): node a at full trust
        leaves = real(model, *args)
        rows = tuple((n, SCALE if n == a else v, s) for n, v, s in leaves.leaves)
        return type(leaves)(
            leaves.chain_id, leaves.ledger, leaves.task, leaves.through_round, leaves.params, rows
        )

    monkeypatch.setattr("fl_chain.coordinator.commitment.checkpoint_of", inflated)
    second, third = task.commit(2), task.commit(3)  # the third is proposed on the (pending) second
    assert checkpoints.get(client, third.checkpoint).base == second.checkpoint
    monkeypatch.undo()
    for number in (2, 3):
        task.judge_round(number)
    assert not any(v.attested for v in task.judge_checkpoint(second.checkpoint))
    assert checkpoints.get(client, second.checkpoint).rejected
    assert client.checkpoints.functions.lastProposed(task.task).call() == first.checkpoint
    task.judge_checkpoint(third.checkpoint)
    assert checkpoints.get(client, third.checkpoint).rejected

    fourth = task.commit(4)  # an honest proposal, on the last finalized checkpoint
    assert checkpoints.get(client, fourth.checkpoint).base == first.checkpoint
    verdicts = _finalize(task, 4, fourth.checkpoint)
    assert all(v.attested for v in verdicts)
    assert checkpoints.latest(client, task.task).id == fourth.checkpoint


def test_a_revoked_validators_votes_stop_counting(task: Task, chain) -> None:
    """Before: a validator's attestation counted after its VALIDATOR_ROLE was revoked, so one more
    attestation finalized the round (and the checkpoint). Now anyone discounts it (O(1))."""
    client, (v0, v1, v2), anyone = task.client, task.validators, task.nodes[0]
    commit = task.commit(1)
    v0.attest(task.task, 1)
    assert v0.judge_checkpoint(task.task, commit.checkpoint).attested
    with pytest.raises(FlchainError, match=r"StillValidator"):
        quorum.discount(client, anyone, task.task, 1, v0.account.address)
    quorum.set_validator(client, chain.admin, v0.account.address, granted=False)
    quorum.discount(client, anyone, task.task, 1, v0.account.address)
    checkpoints.discount_vote(client, anyone, commit.checkpoint, v0.account.address)
    with pytest.raises(FlchainError, match=r"NothingToDiscount"):  # once only
        quorum.discount(client, anyone, task.task, 1, v0.account.address)
    assert quorum.attestation_count(client, task.task, 1) == 0

    v1.attest(task.task, 1)
    assert not quorum.is_finalized(client, task.task, 1)  # the revoked attestation does not count
    v1.judge_checkpoint(task.task, commit.checkpoint)
    assert not checkpoints.get(client, commit.checkpoint).finalized
    v2.attest(task.task, 1)
    v2.judge_checkpoint(task.task, commit.checkpoint)
    assert quorum.is_finalized(client, task.task, 1)  # two current validators: the quorum
    record = checkpoints.get(client, commit.checkpoint)
    assert record.finalized and record.attestations == 2


def test_revoking_a_validator_through_the_cli_discounts_its_pending_votes(
    task: Task, chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`flchain node validator-role ADDRESS --revoke` takes the role and discounts the former validator's
    votes on unresolved rounds and checkpoints (before: the revocation left them counting)."""
    from fl_chain.cli import run
    from tests.chainutil import home_with_deployment

    client, v0 = task.client, task.validators[0]
    commit = task.commit(1)
    v0.attest(task.task, 1)
    v0.judge_checkpoint(task.task, commit.checkpoint)
    home = home_with_deployment(chain, tmp_path)
    assert run(["node", "validator-role", v0.account.address, "--revoke", "--home", str(home)]) == 0
    assert "discounted its votes on 1 rounds and 1 checkpoints" in capsys.readouterr().out
    assert quorum.attestation_count(client, task.task, 1) == 0
    assert checkpoints.get(client, commit.checkpoint).attestations == 0
    task.validators[1].attest(task.task, 1)
    assert not quorum.is_finalized(client, task.task, 1)


def test_a_parameter_change_mid_task_is_folded_alike(task: Task, chain) -> None:
    """Before: the coordinator folded every round with the parameters it read at start and the
    validators with the current ones, so after a change they computed different roots and every later
    checkpoint was disputed. Now each round folds with Reputation.parametersAt(its commit block)."""
    client, d = task.client, task.nodes[3].address
    before = reputation.parameters(client)
    first = task.commit(1, penalized=[d])
    new = (before[0], before[1], before[2], 200_000, 100_000)  # a milder penalty, a lower threshold
    receipt = client.transact(chain.admin, client.reputation.functions.setParameters(new))
    second = task.commit(2, penalized=[d])
    third = task.commit(3, penalized=[d])
    _finalize(task, 1, first.checkpoint)
    _finalize(task, 2, second.checkpoint)
    verdicts = _finalize(task, 3, third.checkpoint)
    assert all(v.attested for v in verdicts)
    # d: 0.5 halved by round 1's old penalty, then x0.8 twice with the new one; never below 0.1
    value = 500_000 * (SCALE - before[3]) // SCALE
    for _ in range(2):
        value = value * (SCALE - 200_000) // SCALE
    assert _leaf(task, third.checkpoint, d)[0][1:] == (value, True)
    # the history states from which block each setting holds
    assert reputation.parameters_at(client, receipt["blockNumber"] - 1) == before
    assert reputation.parameters_at(client, receipt["blockNumber"]) == new
    with pytest.raises(FlchainError, match=r"NoParametersAt"):
        reputation.parameters_at(client, 0)
