"""Commitment mode on a real anvil chain: a round commits one root of its outcome leaves at flat gas;
reputation is folded off-chain and checkpointed; three validators (quorum 2) check every round's leaves
and re-compute every checkpoint before it takes effect. Tampered leaves, a wrong checkpoint, a proof for
another checkpoint and a stale proof after a suspension are all refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from fl_chain.chain import checkpoints, ledger, quorum, registry, reputation
from fl_chain.chain.published import History, fetch_outcomes
from fl_chain.chain.setup import bootstrap
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.errors import FlchainError
from fl_chain.protocol.outcomes import MISSED, PENALIZED, SCORED, parse_checkpoint, parse_outcomes
from fl_chain.protocol.reputation_fold import checkpoint_of
from fl_chain.store import ModelStore
from fl_chain.verify.audit import audit_task
from fl_chain.verify.commitment_check import check_checkpoint
from fl_chain.verify.validator import CheckpointVerdict, Dispute, Validator
from tests.chainutil import new_nodes

SCORES = [900_000, 700_000, 400_000, 100_000]


@dataclass
class Task:
    """A commitment-mode task committed by a real RoundCommitter, with four nodes and three validators."""

    committer: RoundCommitter
    nodes: list[LocalAccount]
    validators: list[Validator]
    store: ModelStore
    model: dict

    @property
    def client(self):
        return self.committer.client

    @property
    def task(self) -> int:
        return self.committer.task

    def commit(self, number: int, missed=(), penalized=()):
        """Commit round `number`: every node not missed or penalized is scored."""
        self.model = {k: v + np.float32(0.01) for k, v in self.model.items()}
        out = {n.address for n in self.nodes} - set(missed) - set(penalized)
        scores = {n.address: SCORES[i] for i, n in enumerate(self.nodes) if n.address in out}
        return self.committer.commit(number, self.model, scores, list(missed), list(penalized))

    def judge_round(self, number: int) -> list:
        return [v.attest(self.task, number) for v in self.validators]

    def judge_checkpoint(self, checkpoint_id: int) -> list:
        return [v.judge_checkpoint(self.task, checkpoint_id) for v in self.validators]


@pytest.fixture()
def task(chain, tmp_path: Path) -> Task:
    client = chain.client
    store = ModelStore(tmp_path / "store")
    committer = RoundCommitter.new_task(client, chain.coordinator, store, b"\x02" * 32, mode="commitment")
    model = {"w": np.zeros((3, 2), np.float32)}
    committer.commit(0, model)
    admin = Account.from_key(client.deployment.dev_keys["admin"])
    client.transact(admin, quorum.quorum_contract(client).functions.setQuorum(2))
    validators = [
        Validator(client, account, lambda rnd, arrays: 0.5, task=committer.task)
        for account in bootstrap.new_validators(client, 3)
    ]
    return Task(committer, new_nodes(chain, 4), validators, store, model)


def test_a_round_commits_one_root_at_flat_gas_and_leaves_anyone_can_prove(task: Task) -> None:
    client, (a, *_, d) = task.client, task.nodes
    commit = task.commit(1, missed=[d.address])
    assert commit.gas < 150_000, commit.gas
    assert commit.outcomes_root == ledger.outcomes_root(client, task.task, 1)
    assert ledger.get_round(client, task.task, 1).participant_count == 4
    assert client.events(client.ledger, "ContributionRecorded", commit.receipt) == []
    assert reputation.reputation_of(client, a.address) == 500_000  # the Reputation contract is not called
    outcomes = fetch_outcomes(client, task.task, 1)  # fetched by the committed root, checked against it
    assert [(o.node, o.kind) for o in outcomes.of_kind(MISSED)] == [(d.address, MISSED)]
    leaf = next(o for o in outcomes.outcomes if o.node == a.address)
    assert (leaf.score, leaf.kind) == (SCORES[0], SCORED)
    proof = outcomes.tree().proof(leaf.row())
    prove = client.ledger.functions.isCommittedOutcome
    assert prove(task.task, 1, a.address, SCORES[0], SCORED, proof).call()
    assert not prove(task.task, 1, a.address, SCORES[0] + 1, SCORED, proof).call()
    with pytest.raises(FlchainError, match=r"NotCommitmentRound"):
        client.call(prove(task.task + 99, 1, a.address, 0, 0, proof))
    # the checkpoint of round 1 is proposed with it: four leaves, the reference fold's values
    record = checkpoints.get(client, commit.checkpoint)
    assert (record.task, record.through_round, record.leaf_count) == (task.task, 1, 4)
    assert not record.finalized


def test_validators_attest_rounds_and_checkpoints_and_suspensions_take_effect(task: Task) -> None:
    client, (a, *_, d) = task.client, task.nodes
    first = task.commit(1, penalized=[d.address])
    assert all(v.model_hash for v in task.judge_round(1))
    assert quorum.is_finalized(client, task.task, 1)
    verdicts = task.judge_checkpoint(first.checkpoint)
    assert all(isinstance(v, CheckpointVerdict) and v.attested for v in verdicts[:2])
    assert verdicts[2].attested and checkpoints.get(client, first.checkpoint).attestations == 3
    latest = checkpoints.latest(client, task.task)
    assert latest is not None and latest.id == first.checkpoint
    one = parse_checkpoint(
        (
            task.store.directory / "rounds" / task.committer.writer.book.proposed[first.checkpoint].name()
        ).read_bytes(),
        "checkpoint",
    )
    leaf_d, proof_d = one.proof_of(d.address)
    assert leaf_d[1:] == (250_000, True)  # one penalty halves 0.5: at the threshold, still active
    assert checkpoints.is_active(client, task.task, d.address, leaf_d[1], proof_d)

    second = task.commit(2, penalized=[d.address])
    assert second.suspended == [d.address]  # in the fold at once; on-chain only once finalized
    assert registry.status_of(client, d.address) == "Active"
    task.judge_round(2)
    verdicts = task.judge_checkpoint(second.checkpoint)
    assert sum(v.suspended == [d.address] for v in verdicts) == 1  # the finalizing validator applied it
    assert registry.status_of(client, d.address) == "Suspended"
    # a stale proof (from checkpoint 1, when d was active) is refused against the new checkpoint
    with pytest.raises(FlchainError, match=r"InvalidProof"):
        checkpoints.is_active(client, task.task, d.address, leaf_d[1], proof_d)
    two = task.committer.writer.book.proposed[second.checkpoint]
    leaf_a, proof_a = two.proof_of(a.address)
    assert checkpoints.is_active(client, task.task, a.address, leaf_a[1], proof_a)
    # a proof for another checkpoint (a's from checkpoint 1) is refused
    old_a, old_proof_a = one.proof_of(a.address)
    with pytest.raises(FlchainError, match=r"InvalidProof"):
        checkpoints.is_active(client, task.task, a.address, old_a[1], old_proof_a)
    # applying the suspension again is harmless; applying a non-suspension is refused
    leaf_d2, proof_d2 = two.proof_of(d.address)
    assert leaf_d2[2] is False
    checkpoints.apply_suspension(
        client, task.validators[0].account, task.task, d.address, leaf_d2[1], proof_d2
    )
    with pytest.raises(FlchainError, match=r"InvalidProof"):
        checkpoints.apply_suspension(
            client, task.validators[0].account, task.task, a.address, leaf_a[1], proof_a
        )
    # the fold every validator and the audit run is the coordinator's
    fold = History(client, task.task).fold(2)
    assert (
        checkpoint_of(fold, client.deployment.chain_id, client.ledger.address, task.task, 2).root()
        == two.root()
    )
    findings = audit_task(client, task.task)
    assert not [f for f in findings if not f.ok], [f for f in findings if not f.ok]
    assert any(f.check == "checkpoints" and f.ok for f in findings)


def test_a_node_the_fold_suspends_and_its_checkpoint_then_suspends_is_listed_once(
    task: Task, monkeypatch
) -> None:
    """The coordinator waiting for finality may apply a checkpoint's suspension before any validator
    does: the round reports the node once (the fold's suspension and the registry's are one event)."""
    d = task.nodes[3]
    first = task.commit(1, penalized=[d.address])
    task.judge_round(1)
    task.judge_checkpoint(first.checkpoint)
    propose = task.committer.writer.checkpoint

    def finalized_at_once(round_number: int) -> tuple[int, int] | None:
        proposed = propose(round_number)
        assert proposed is not None
        task.judge_round(round_number)
        root = task.committer.writer.book.proposed[proposed[0]].root()
        for validator in task.validators[:2]:  # a quorum attests; the coordinator applies first
            checkpoints.attest(task.client, validator.account, proposed[0], root)
        return proposed

    monkeypatch.setattr(task.committer.writer, "checkpoint", finalized_at_once)
    task.committer.wait_finalized = 30.0
    second = task.commit(2, penalized=[d.address])
    assert checkpoints.get(task.client, second.checkpoint).finalized
    assert registry.status_of(task.client, d.address) == "Suspended"
    assert second.suspended == [d.address]


def test_a_tampered_leaf_set_is_disputed_and_the_round_never_finalized(task: Task) -> None:
    client = task.client
    commit = task.commit(1)
    path = task.store.directory / "rounds" / fetch_outcomes(client, task.task, 1).name()
    data = json.loads(path.read_bytes())
    data["outcomes"][0][1] = 1_000_000  # a friend's score raised after the commit
    path.write_text(json.dumps(data))
    early = check_checkpoint(client, commit.checkpoint, History(client, task.task))  # before any dispute
    assert not early.ok and "the leaves of a folded round do not check" in early.difference
    verdicts = task.judge_round(1)
    assert all(isinstance(v, Dispute) and "leaves give root" in v.reason for v in verdicts), verdicts
    assert quorum.is_disputed(client, task.task, 1) and not quorum.is_finalized(client, task.task, 1)
    # nor can the checkpoint built on that round be re-computed here: it is disputed, never in effect
    verdicts = task.judge_checkpoint(commit.checkpoint)
    assert all(not v.attested and "folds round 1, which I disputed" in v.reason for v in verdicts), verdicts
    record = checkpoints.get(client, commit.checkpoint)
    assert record.rejected and not record.finalized and checkpoints.latest(client, task.task) is None
    findings = audit_task(client, task.task)
    assert any(not f.ok and "leaves give root" in f.detail for f in findings)


def test_leaves_naming_a_node_that_is_not_active_are_disputed(task: Task) -> None:
    stranger = Account.create()  # never registered: nothing on-chain checks leaves, the validators do
    scores = {task.nodes[0].address: 500_000, stranger.address: 900_000}
    task.committer.commit(1, task.model, scores)
    verdicts = task.judge_round(1)
    assert all(
        isinstance(v, Dispute) and f"{stranger.address} (scored) was not Active" in v.reason for v in verdicts
    )


def test_a_wrong_checkpoint_is_disputed_and_never_finalized(task: Task, monkeypatch) -> None:
    client, (a, *_) = task.client, task.nodes
    real = checkpoint_of

    def inflated(model, *args):  # the coordinator credits node a with full trust
        leaves = real(model, *args)
        cooked = tuple((n, 1_000_000 if n == a.address else v, s) for n, v, s in leaves.leaves)
        return type(leaves)(
            leaves.chain_id, leaves.ledger, leaves.task, leaves.through_round, leaves.params, cooked
        )

    monkeypatch.setattr("fl_chain.coordinator.commitment.checkpoint_of", inflated)
    commit = task.commit(1)
    record = checkpoints.get(client, commit.checkpoint)
    with pytest.raises(FlchainError, match=r"RootMismatch"):  # a validator's own root is not the proposed
        checkpoints.attest(client, task.validators[0].account, record.id, bytes(32))
    verdicts = task.judge_checkpoint(record.id)
    assert all(isinstance(v, CheckpointVerdict) and not v.attested for v in verdicts)
    assert "fold to root" in verdicts[0].reason
    disputed = client.events(client.checkpoints, "CheckpointDisputed", _receipt(client, verdicts[0].tx))
    assert disputed[0]["node"] == a.address  # the differing leaf is named
    record = checkpoints.get(client, record.id)
    assert record.rejected and not record.finalized and checkpoints.latest(client, task.task) is None
    with pytest.raises(FlchainError, match=r"NoFinalizedCheckpoint"):
        client.call(client.checkpoints.functions.latest(task.task))
    # the round itself is fine: its leaves check, so it finalizes
    task.judge_round(1)
    assert quorum.is_finalized(client, task.task, 1)
    findings = audit_task(client, task.task)
    assert any(f.check == "checkpoints" and not f.ok and "rejected" in f.detail for f in findings)


def test_the_contracts_refuse_bad_proposals_and_votes(task: Task) -> None:
    client, coordinator = task.client, task.committer.coordinator
    stranger = Account.create()
    client.fund(coordinator, stranger.address, bootstrap.NODE_FUNDS_WEI)
    commit = task.commit(1)
    with pytest.raises(FlchainError, match=r"NotValidator"):
        checkpoints.attest(
            client, stranger, commit.checkpoint, checkpoints.get(client, commit.checkpoint).root
        )
    with pytest.raises(FlchainError, match=r"BadRange"):  # not past its base (checkpoint of round 1)
        checkpoints.propose(client, coordinator, task.task, 1, b"\x01" * 32, 1)
    with pytest.raises(FlchainError, match=r"EmptyCheckpoint"):
        checkpoints.propose(client, coordinator, task.task, 2, bytes(32), 1)
    with pytest.raises(FlchainError, match=r"AccessControlUnauthorizedAccount"):
        checkpoints.propose(client, stranger, task.task, 2, b"\x01" * 32, 1)
    admin = Account.from_key(client.deployment.dev_keys["admin"])
    role = client.checkpoints.functions.COORDINATOR_ROLE().call()
    client.transact(admin, client.checkpoints.functions.grantRole(role, stranger.address))
    with pytest.raises(FlchainError, match=r"NotTaskOwner"):  # another coordinator, not this task's owner
        checkpoints.propose(client, stranger, task.task, 2, b"\x01" * 32, 1)
    with pytest.raises(FlchainError, match=r"OutcomesCheckRequired"):  # a plain attest skips the leaves
        quorum.attest(client, task.validators[0].account, task.task, 1, commit.model_hash, 500_000)
    with pytest.raises(FlchainError, match=r"WrongOutcomesRoot"):
        quorum.attest_outcomes(
            client, task.validators[0].account, task.task, 1, commit.model_hash, b"\x07" * 32, 500_000
        )
    task.judge_checkpoint(commit.checkpoint)
    with pytest.raises(FlchainError, match=r"AlreadyVoted"):
        checkpoints.attest(client, task.validators[0].account, commit.checkpoint, b"\x01" * 32)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(version=9), r"outcomes version 9"),
        (lambda d: d["outcomes"][0].__setitem__(2, 7), r"outcomes\[0\]: outcome kind 7"),
        (lambda d: d["outcomes"][0].__setitem__(1, 2_000_000), r"outcomes\[0\]: score 2000000"),
        (lambda d: d["outcomes"].append(d["outcomes"][0]), r"names a node twice"),
        (lambda d: d["outcomes"].reverse(), r"not in canonical order"),
        (lambda d: d.update(ledger="nope"), r"ledger is not an address"),
    ],
)
def test_damaged_outcome_leaves_give_one_line_errors(task: Task, edit, expected: str) -> None:
    task.commit(1, penalized=[task.nodes[3].address])
    path = task.store.directory / "rounds" / fetch_outcomes(task.client, task.task, 1).name()
    data = json.loads(path.read_bytes())
    edit(data)
    with pytest.raises(FlchainError, match=expected) as info:
        parse_outcomes(json.dumps(data).encode(), "leaves.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("leaves.json: ")
    assert PENALIZED in {o[2] for o in json.loads(path.read_bytes())["outcomes"]}


def _receipt(client, tx: str):
    return client.w3.eth.get_transaction_receipt(tx)


def test_a_resumed_coordinator_refolds_the_published_leaves(task: Task) -> None:
    """A coordinator restarted mid-task rebuilds its reputation fold from the published leaves, so its
    next checkpoint is the one the validators compute."""
    d = task.nodes[3].address
    task.commit(1, penalized=[d])
    second = task.commit(2, missed=[d])
    resumed = RoundCommitter(
        task.client, task.committer.coordinator, task.task, task.store, second.model_hash, mode="commitment"
    )
    task.committer = resumed
    third = task.commit(3)
    assert resumed.writer.book.fold.values[d] < 500_000  # its penalty and miss, read back from the leaves
    for number in (1, 2, 3):
        task.judge_round(number)
    for earlier in (third.checkpoint - 2, third.checkpoint - 1):  # a checkpoint finalizes on a final base
        task.judge_checkpoint(earlier)
    verdicts = task.judge_checkpoint(third.checkpoint)
    assert all(v.attested for v in verdicts), verdicts
    assert checkpoints.latest(task.client, task.task).id == third.checkpoint


def test_flchain_validator_attests_rounds_and_checkpoints_through_the_cli(
    task: Task, chain, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flchain validator --once`: attests a commitment-mode round and its checkpoint, and disputes a
    checkpoint its own fold does not give (saying which)."""
    from fl_chain.chain.identity import write_keystore
    from fl_chain.cli import run
    from tests.chainutil import home_with_deployment

    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", "pw")
    home = home_with_deployment(chain, tmp_path)
    key = tmp_path / "validator.json"
    address = write_keystore(key, "pw")
    task.client.fund(chain.admin, address, 10**18)
    assert run(["node", "validator-role", address, "--home", str(home)]) == 0
    first = task.commit(1)
    real = checkpoint_of

    def cooked(model, *args):
        leaves = real(model, *args)
        rows = tuple((n, 1_000_000, s) for n, _, s in leaves.leaves)
        return type(leaves)(
            leaves.chain_id, leaves.ledger, leaves.task, leaves.through_round, leaves.params, rows
        )

    monkeypatch.setattr("fl_chain.coordinator.commitment.checkpoint_of", cooked)
    second = task.commit(2)
    evaluate = "tests.test_verified_rounds:constant_evaluate"
    capsys.readouterr()
    args = ["validator", "--key", str(key), "--once", "--task", str(task.task), "--evaluate", evaluate]
    assert run([*args, "--home", str(home)]) == 0
    out = capsys.readouterr()
    assert f"attested task {task.task} round 1" in out.out and f"attested task {task.task} round 2" in out.out
    assert f"attested reputation checkpoint {first.checkpoint} of task {task.task}" in out.out, out
    assert f"disputed reputation checkpoint {second.checkpoint} of task {task.task}" in out.err, out
    assert "fold to root" in out.err
    assert checkpoints.has_voted(task.client, first.checkpoint, address)
