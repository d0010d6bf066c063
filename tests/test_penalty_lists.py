"""Penalties only where they belong (issue 24, point 4), on a real anvil chain.

ModelLedger's commit refuses `missed` and `penalized` lists that are not sorted strictly ascending (so no
node is charged twice in one commit), that share a node with each other or with the participants, or
that name a node of another task (a member of some task but not of this one: so a task's coordinator
cannot reach the standing of another task's nodes, not even from a round without participants, while a
newcomer in no task yet is charged for its first round). The coordinator sends the lists sorted,
disjoint and chargeable only. Validators dispute a
verified round whose commit penalized a node the manifest does not disclose as excluded.

Before this change every list below was accepted: a node listed twice lost half its reputation twice in
one commit, any coordinator could penalize any node, and validators attested such rounds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from fl_chain.chain import charges, ledger, quorum, settlement, update_claims
from fl_chain.chain.client import role_id
from fl_chain.cli import run
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.screening import Screened
from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.update_signing import RoundContext, sign_update
from fl_chain.store import ModelStore
from fl_chain.verify.validator import Attestation, Dispute
from tests.chainutil import LocalChain, home_with_deployment, new_nodes
from tests.test_verified_rounds import Federation, federation  # noqa: F401 (the fixture)
from tests.verified_helpers import derive

ZERO = b"\0" * 32


class Task:
    """A plain task committed round by round with raw contract calls (this tests the contract, not the
    wrapper's clean-up of the lists)."""

    def __init__(self, chain: LocalChain, owner: LocalAccount) -> None:
        self.chain, self.owner = chain, owner
        client = chain.client
        client.transact(
            owner,
            client.ledger.functions.createTask(Web3.keccak(text=owner.address), "", 0, ledger.ZERO_HASH),
        )
        self.id = int(client.ledger.functions.taskCount().call())
        self.round, self.parent = 0, ZERO

    def commit(self, scored=(), missed=(), penalized=()):
        """Commit the next round: `scored` nodes at 500_000 (their value: reputation unchanged), the
        lists sent exactly as given."""
        participants = sorted((n.address for n in scored), key=lambda a: int(a, 16))
        model = Web3.keccak(text=f"model {self.id}/{self.round}")
        fn = self.chain.client.ledger.functions.commitRound(
            self.id,
            self.round,
            model,
            "",
            self.parent,
            participants,
            [500_000] * len(participants),
            [n.address for n in missed],
            [n.address for n in penalized],
            charges.newcomers(self.chain.client, self.id, participants),  # scored: members from now on
        )
        receipt = self.chain.client.transact(self.owner, fn)
        self.round, self.parent = self.round + 1, model
        return receipt


def _sorted(nodes: list[LocalAccount]) -> list[LocalAccount]:
    return sorted(nodes, key=lambda n: int(n.address, 16))


def _reputation(chain: LocalChain, node: LocalAccount) -> int:
    return int(chain.client.reputation.functions.reputationOf(node.address).call())


def test_a_node_listed_twice_or_out_of_order_is_refused(chain: LocalChain) -> None:
    """Before: a node listed twice in `penalized` was penalized twice in one commit (0.5 -> 0.125,
    suspended at once); now the commit reverts and nothing changes."""
    a, b, c = _sorted(new_nodes(chain, 3))
    task = Task(chain, chain.coordinator)
    task.commit(scored=[a, b, c])
    for lists, error in (
        ({"penalized": [b, b]}, "PenalizedNotSorted(index=1)"),
        ({"missed": [b, b]}, "MissedNotSorted(index=1)"),
        ({"penalized": [c, b]}, "PenalizedNotSorted(index=1)"),
        ({"missed": [c, b]}, "MissedNotSorted(index=1)"),
    ):
        with pytest.raises(FlchainError, match="ModelLedger.commitRound: " + re.escape(error)):
            task.commit(scored=[a], **lists)
    assert [_reputation(chain, n) for n in (a, b, c)] == [500_000] * 3
    assert ledger.round_count(chain.client, task.id) == 1


def test_a_node_in_two_lists_is_refused(chain: LocalChain) -> None:
    """Before: a participant could be scored and penalized in the same round, and a node both missed
    and penalized was charged twice."""
    a, b, c = _sorted(new_nodes(chain, 3))
    task = Task(chain, chain.coordinator)
    task.commit(scored=[a, b, c])
    for lists in (
        {"scored": [a, b], "penalized": [b]},
        {"scored": [a, b], "missed": [a]},
        {"scored": [a], "missed": [b, c], "penalized": [c]},
        {"missed": [b], "penalized": [a, b]},
    ):
        with pytest.raises(FlchainError, match=r"ListedTwice\(node=0x"):
            task.commit(**lists)
    assert [_reputation(chain, n) for n in (a, b, c)] == [500_000] * 3


def _other_coordinator(chain: LocalChain) -> Account:
    """A second coordinator account (funded, COORDINATOR_ROLE), owner of its own tasks."""
    client = chain.client
    other = Account.create()
    client.fund(chain.admin, other.address, 10**18)
    client.transact(
        chain.admin, client.ledger.functions.grantRole(role_id("COORDINATOR_ROLE"), other.address)
    )
    return other


def test_a_task_charges_its_members_and_newcomers_never_another_tasks_nodes(chain: LocalChain) -> None:
    """a and b work in task `mine`, c in task `theirs`; n is registered but in no task yet. Neither
    coordinator can charge the other's nodes (a round without participants included), while a newcomer
    that misbehaves in its first round is charged by the task it answered. Before: a round with no
    participants penalized anyone, and another task's coordinator penalized (and, twice, suspended) a
    node that never took part in its task."""
    client = chain.client
    a, b, c, n = _sorted(new_nodes(chain, 4))
    mine, theirs = Task(chain, chain.coordinator), Task(chain, _other_coordinator(chain))
    mine.commit(scored=[a, b])
    theirs.commit(scored=[c])
    with pytest.raises(FlchainError, match=rf"NotTaskMember\(task={theirs.id}, node={a.address}\)"):
        theirs.commit(penalized=[a])  # a round without participants, a node of another task
    with pytest.raises(FlchainError, match=rf"NotTaskMember\(task={mine.id}, node={c.address}\)"):
        mine.commit(scored=[a], penalized=[c])
    with pytest.raises(FlchainError, match=rf"NotTaskMember\(task={mine.id}, node={c.address}\)"):
        mine.commit(missed=[c])
    assert [_reputation(chain, node) for node in (a, b, c, n)] == [500_000] * 4
    chargeable = client.ledger.functions.chargeable
    assert chargeable(mine.id, a.address).call() and not chargeable(theirs.id, a.address).call()
    assert chargeable(mine.id, n.address).call() and chargeable(theirs.id, n.address).call()
    receipt = mine.commit(scored=[a], penalized=[n])  # the newcomer's first round: charged
    assert [e["node"] for e in client.events(client.reputation, "Penalized", receipt)] == [n.address]
    assert _reputation(chain, n) == 250_000
    membership = client.ledger.functions.isMember
    assert membership(mine.id, a.address).call() and not membership(theirs.id, a.address).call()
    assert not membership(mine.id, n.address).call()  # charged, not scored: still in no task


def test_a_member_can_be_missed_and_penalized_once_per_round(chain: LocalChain) -> None:
    """What stays allowed: members charged once each; membership is recorded (and announced) once."""
    client = chain.client
    a, b, c = _sorted(new_nodes(chain, 3))
    task = Task(chain, chain.coordinator)
    first = task.commit(scored=[a, b, c])
    joined = client.events(client.ledger, "TaskMember", first)
    assert [(e["task"], e["node"]) for e in joined] == [(task.id, n.address) for n in (a, b, c)]
    receipt = task.commit(scored=[a], missed=[b], penalized=[c])
    assert client.events(client.ledger, "TaskMember", receipt) == []  # a is already a member
    assert [e["node"] for e in client.events(client.reputation, "RoundMissed", receipt)] == [b.address]
    assert [e["node"] for e in client.events(client.reputation, "Penalized", receipt)] == [c.address]
    assert (_reputation(chain, b), _reputation(chain, c)) == (450_000, 250_000)
    assert charges.missed_in(client, task.id, 1) == {b.address.lower()}
    assert charges.penalized_in(client, task.id, 1) == {c.address.lower()}


def test_the_coordinator_sends_clean_lists_and_charges_no_stranger(chain: LocalChain, tmp_path: Path) -> None:
    """The coordinator's commit of messy lists does not revert: duplicates and overlaps are removed, and
    a node of another task is not charged (it stays in the round report only). Before, the same call
    charged the other task's node and the duplicated node twice."""
    a, b, stranger = _sorted(new_nodes(chain, 3))
    Task(chain, _other_coordinator(chain)).commit(scored=[stranger])  # the stranger works elsewhere
    store = ModelStore(tmp_path / "store")
    committer = RoundCommitter.new_task(chain.client, chain.coordinator, store, b"\x02" * 32)
    model = {"w": np.zeros((2, 2), np.float32)}
    committer.commit(0, model, {a.address: 500_000, b.address: 500_000})
    commit = committer.commit(
        1,
        {"w": np.ones((2, 2), np.float32)},
        {a.address: 500_000},
        missed=[b.address, b.address.lower(), a.address, stranger.address],
        penalized=[stranger.address, b.address, b.address],
    )
    client = chain.client
    assert [e["node"] for e in client.events(client.reputation, "Penalized", commit.receipt)] == [b.address]
    assert client.events(client.reputation, "RoundMissed", commit.receipt) == []
    assert (_reputation(chain, b), _reputation(chain, stranger)) == (250_000, 500_000)


def _verified_round(
    f: Federation, number: int, excluded: dict[str, str], penalized: list[str], missed: tuple[str, ...] = ()
) -> tuple[list[Attestation | Dispute], set[str]]:
    """A verified round in which every node signs an update; those in `excluded` are disclosed as
    excluded with that reason, the others aggregated; the commit charges `penalized`. Returns the
    validators' verdicts and the nodes the commit penalized on-chain."""
    client = f.client
    context = RoundContext(client.deployment.chain_id, client.ledger.address, f.committer.task, number)
    screened = Screened()
    for node in f.nodes:
        arrays = {k: (v + f.rng.normal(0.05, 0.1, v.shape)).astype(v.dtype) for k, v in f.model.items()}
        signed = sign_update(node, *vars(context).values(), hash_arrays(arrays), 100)
        screened.claims[node.address] = signed
        if node.address in excluded:
            screened.dropped[node.address] = excluded[node.address]
            continue
        screened.signed[node.address] = signed
        screened.updates[node.address] = screened.originals[node.address] = arrays
        screened.weights[node.address] = float(signed.weight)
    model, scores, built = derive(context, screened, f.model, f.committer.parent_hash)
    commit = f.committer.commit(number, model, scores, missed, penalized, verified=built)
    f.model = model
    assert client.events(client.reputation, "Penalized", commit.receipt) == []  # held until finality stands
    charged = {a for a in penalized if a.lower() in charges.penalized_in(client, f.committer.task, number)}
    return f.judge(number), charged


def test_a_penalty_the_manifest_discloses_is_attested(
    federation: Federation,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An honest coordinator charges a node whose update it excluded with a reason: the validators
    attest. A node it penalizes without disclosing it is not charged on-chain (the commit would be
    disputed). The charge waits until the round's finality stands; then anyone settles it, once
    (`flchain settle`)."""
    f = federation
    f.round(1)  # every node is a scored participant: members of the task
    f.judge(1)
    outlier, undisclosed = f.nodes[1].address, f.nodes[3].address
    before = _reputation_at(f, outlier)
    verdicts, charged = _verified_round(f, 2, {outlier: "penalized: outlier"}, [outlier, undisclosed])
    assert charged == {outlier}
    assert all(isinstance(v, Attestation) for v in verdicts), verdicts
    assert quorum.is_finalized(f.client, f.committer.task, 2)
    assert _reputation_at(f, outlier) == before  # finalized, but still disputable: nothing charged yet
    with pytest.raises(FlchainError, match="FinalityNotStanding"):
        settlement.settle(f.client, f.nodes[0], f.committer.task, 2)  # anyone may, once it stands
    home = home_with_deployment(f.chain, tmp_path)
    settle = ["settle", "--task", str(f.committer.task), "--home", str(home)]
    assert run(settle) == 0 and "no round's charges are due" in capsys.readouterr().out
    with _past_deadline(f, 2):
        assert run(settle) == 0
        assert f"task {f.committer.task} round 2: charges settled" in capsys.readouterr().out
        assert [e["args"]["node"] for e in f.client.logs(f.client.reputation, "Penalized")][-1] == outlier
        assert _reputation_at(f, outlier) < before
        assert not settlement.has_pending(f.client, f.committer.task, 2)
        with pytest.raises(FlchainError, match="NothingToSettle"):
            settlement.settle(f.client, f.nodes[0], f.committer.task, 2)


def _reputation_at(f: Federation, address: str) -> int:
    return int(f.client.reputation.functions.reputationOf(address).call())


@contextmanager
def _past_deadline(f: Federation, number: int) -> Iterator[None]:
    """Anvil's clock past the round's complaint deadline, then back (evm_revert restores state and time)."""
    rpc = f.client.w3.provider
    snapshot = rpc.make_request("evm_snapshot", [])["result"]
    try:
        deadline = update_claims.complaint_deadline(f.client, f.committer.task, number)
        now = int(f.client.w3.eth.get_block("latest")["timestamp"])
        rpc.make_request("evm_increaseTime", [max(deadline - now + 1, 1)])
        rpc.make_request("evm_mine", [])
        yield
    finally:
        assert rpc.make_request("evm_revert", [snapshot]).get("result") is True


def test_validators_dispute_a_penalty_the_manifest_does_not_disclose(federation: Federation) -> None:  # noqa: F811
    """A coordinator that skips the clean-up (plays dishonest) penalizes a node whose update it
    aggregated nowhere and disclosed nowhere: the validators dispute the round, naming the node.
    Before, validators never read the penalized list and attested."""
    f = federation
    f.round(1)
    f.judge(1)
    victim = f.nodes[2]
    f.committer.writer.charges = lambda rnd: ([], sorted(rnd.penalized))  # skips the clean-up
    real_commit = f.committer.commit
    f.committer.commit = lambda number, model, scores, verified=None: real_commit(
        number, model, scores, penalized=[victim.address], verified=verified
    )
    f.round(2, skip_claims=(victim.address,))  # its update left out, and the node penalized
    assert charges.penalized_in(f.client, f.committer.task, 2) == {victim.address.lower()}
    verdicts = f.judge(2)
    assert all(isinstance(v, Dispute) for v in verdicts), verdicts
    assert all(victim.address in v.reason and "penalized" in v.reason for v in verdicts), verdicts
    assert all(v.leaf.endswith(victim.address[2:].lower()) for v in verdicts), verdicts  # names the node
    assert quorum.is_disputed(f.client, f.committer.task, 2)
    before = _reputation_at(f, victim.address)
    with _past_deadline(f, 2):  # a disputed round's penalty is never applied, by anyone, ever
        assert settlement.due_rounds(f.client, f.committer.task) == []
        with pytest.raises(FlchainError, match="FinalityNotStanding"):
            settlement.settle(f.client, f.nodes[0], f.committer.task, 2)
        assert _reputation_at(f, victim.address) == before
    assert not quorum.is_finalized(f.client, f.committer.task, 2)


def test_validators_dispute_a_missed_record_for_a_node_the_manifest_discloses(
    federation: Federation,  # noqa: F811
) -> None:
    """A coordinator that skips the clean-up records as missed a node whose update it disclosed (as
    excluded): the node answered, so the validators dispute. Before, they attested."""
    f = federation
    f.round(1)
    f.judge(1)
    late = f.nodes[0].address
    f.committer.writer.charges = lambda rnd: (sorted(rnd.missed), [])  # the dishonest coordinator
    verdicts, _ = _verified_round(f, 2, {late: "arrived after the deadline"}, [], missed=(late,))
    assert charges.missed_in(f.client, f.committer.task, 2) == {late.lower()}
    assert all(isinstance(v, Dispute) and f"{late} was recorded as missed" in v.reason for v in verdicts), (
        verdicts
    )
    assert quorum.is_disputed(f.client, f.committer.task, 2)
