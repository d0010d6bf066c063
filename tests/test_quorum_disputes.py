"""ValidationQuorum on a real anvil chain: a verified round is attested only by re-derivation
(attestVerified against the committed updates root); validators dispute rounds, and a quorum of disputes
makes a round disputed, never (or no longer) finalized. One lying validator is outvoted either way: its
dispute alone does not block an honest round, its attestation alone does not finalize a tampered one.
Every check reads the chain's state (views, events), the audit and the Python wrappers built on them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from fl_chain.chain import ledger, quorum
from fl_chain.chain.setup import bootstrap
from fl_chain.chain.watcher import ChainWatcher
from fl_chain.dashboard.ledger_view import ChainFacts, LedgerView
from fl_chain.errors import FlchainError
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.verify.audit import Finding, audit_task
from fl_chain.views import describe_event
from tests.chainutil import LocalChain


@dataclass
class Rounds:
    """A verified task whose rounds are committed by hand (round 0 plain, then verified), four validators
    and quorum 2."""

    chain: LocalChain
    task: int
    validators: list[LocalAccount]
    parent: bytes = ledger.ZERO_HASH
    next_round: int = 0

    @property
    def client(self):
        return self.chain.client

    def commit(self, verified: bool) -> tuple[int, bytes, bytes | None]:
        """Commit the task's next round; return its number, model hash and updates root (None: plain)."""
        rnd = self.next_round
        model = keccak(text=f"model {self.task}/{rnd}")
        root = keccak(text=f"updates {self.task}/{rnd}") if verified else None
        ledger.commit_round(
            self.client, self.chain.coordinator, self.task, rnd, model, "", self.parent, {}, updates_root=root
        )
        self.parent, self.next_round = model, rnd + 1
        return rnd, model, root


@pytest.fixture()
def rounds(chain: LocalChain) -> Rounds:
    client = chain.client
    client.transact(chain.admin, quorum.quorum_contract(client).functions.setQuorum(2))
    validators = bootstrap.new_validators(client, 4)
    task = ledger.create_task(
        client, chain.coordinator, b"\x05" * 32, "file:///nowhere/", LedgerMode.VERIFIED, b"\x0e" * 32
    )
    return Rounds(chain, task, validators)


def _disputes(findings: list[Finding], rnd: int) -> list[Finding]:
    return [f for f in findings if f.check == "disputes" and f.where.endswith(f"round {rnd}")]


def test_a_verified_round_counts_only_attestations_of_its_derivation(rounds: Rounds) -> None:
    client, task, (v1, v2, *_) = rounds.client, rounds.task, rounds.validators
    plain, plain_hash, _ = rounds.commit(verified=False)
    rnd, model, root = rounds.commit(verified=True)
    assert ledger.updates_root(client, task, rnd) == root and ledger.updates_root(client, task, plain) is None

    with pytest.raises(FlchainError, match=rf"DerivationRequired\(task={task}, round={rnd}\)"):
        quorum.attest(client, v1, task, rnd, model, 900_000)
    wrong = keccak(text="another root")
    with pytest.raises(FlchainError, match=r"WrongUpdatesRoot\(.*attested=0x" + wrong.hex()):
        quorum.attest_verified(client, v1, task, rnd, model, wrong, 900_000)
    with pytest.raises(FlchainError, match=r"WrongHash"):
        quorum.attest_verified(client, v1, task, rnd, keccak(text="another model"), root, 900_000)
    with pytest.raises(FlchainError, match=rf"NotVerifiedRound\(task={task}, round={plain}\)"):
        quorum.attest_verified(client, v1, task, plain, plain_hash, keccak(text="any root"), 900_000)
    assert (
        quorum.attestation_count(client, task, rnd) == 0
        and quorum.attestation_count(client, task, plain) == 0
    )

    receipt = quorum.attest_verified(client, v1, task, rnd, model, root, 910_000)
    contract = quorum.quorum_contract(client)
    [attested] = client.events(contract, "Attested", receipt)
    [derived] = client.events(contract, "DerivationAttested", receipt)
    assert attested["validator"] == v1.address and attested["metric"] == 910_000
    assert derived["validator"] == v1.address and derived["updatesRoot"] == root
    assert quorum.has_attested(client, task, rnd, v1.address) and not quorum.is_finalized(client, task, rnd)
    with pytest.raises(FlchainError, match="AlreadyAttested"):
        quorum.attest_verified(client, v1, task, rnd, model, root, 910_000)
    receipt = quorum.attest_verified(client, v2, task, rnd, model, root, 890_000)
    [final] = client.events(contract, "RoundFinalized", receipt)
    assert final["attestations"] == 2 and quorum.is_finalized(client, task, rnd)  # counts like attest

    quorum.attest(client, v1, task, plain, plain_hash, 500_000)  # a plain round: plain attest as before
    assert quorum.attestation_count(client, task, plain) == 1


def test_a_lone_dispute_is_outvoted_and_shown_by_the_audit(rounds: Rounds) -> None:
    client, task, (v1, v2, liar, _) = rounds.client, rounds.task, rounds.validators
    rnd, model, root = rounds.commit(verified=True)
    quorum.attest_verified(client, v1, task, rnd, model, root, 900_000)
    quorum.attest_verified(client, v2, task, rnd, model, root, 900_000)
    assert quorum.is_finalized(client, task, rnd)
    receipt = quorum.dispute(client, liar, task, rnd, bytes(32), "says the aggregate is cooked")
    assert client.events(quorum.quorum_contract(client), "RoundDisputed", receipt) == []
    assert quorum.is_finalized(client, task, rnd) and not quorum.is_disputed(client, task, rnd)
    assert quorum.dispute_count(client, task, rnd) == 1 and quorum.has_disputed(
        client, task, rnd, liar.address
    )
    assert not quorum.has_disputed(client, task, rnd, v1.address)
    assert quorum.latest_finalized(client, task) == rnd
    quorum.require_finalized(client, task, rnd)  # an honest round stays usable
    quorum.wait_finalized(client, task, rnd, timeout=5)

    [finding] = _disputes(audit_task(client, task), rnd)
    assert finding.ok, finding  # outvoted: shown, not a failure of the audit
    assert "outvoted" in finding.detail
    assert liar.address in finding.detail and "says the aggregate is cooked" in finding.detail


def test_a_quorum_of_disputes_keeps_a_tampered_round_from_finality(rounds: Rounds, tmp_path: Path) -> None:
    client, task, (liar, v2, v3, late) = rounds.client, rounds.task, rounds.validators
    contract = quorum.quorum_contract(client)
    rnd, model, root = rounds.commit(verified=True)
    quorum.attest_verified(client, liar, task, rnd, model, root, 990_000)
    assert not quorum.is_finalized(client, task, rnd)  # its attestation alone finalizes nothing
    leaf = keccak(text="the leaf that did not re-derive")
    first = quorum.dispute(client, v2, task, rnd, leaf, "leaf 3: weight 120 committed, 80 signed")
    assert client.events(contract, "RoundDisputed", first) == [] and not quorum.is_disputed(client, task, rnd)
    second = quorum.dispute(client, v3, task, rnd, bytes.fromhex(v2.address[2:]), "aggregate differs")
    [said] = client.events(contract, "Disputed", second)
    assert said["leaf"] == bytes(12) + bytes.fromhex(v2.address[2:])  # an address, left-padded
    assert said["validator"] == v3.address and said["reason"] == "aggregate differs"
    [disputed] = client.events(contract, "RoundDisputed", second)
    assert (disputed["task"], disputed["round"], disputed["disputes"]) == (task, rnd, 2)

    receipt = quorum.attest_verified(client, late, task, rnd, model, root, 990_000)  # recorded, counted...
    assert client.events(contract, "Attested", receipt) and quorum.attestation_count(client, task, rnd) == 2
    assert client.events(contract, "RoundFinalized", receipt) == []  # ...but it does not finalize
    assert quorum.is_disputed(client, task, rnd) and not quorum.is_finalized(client, task, rnd)
    assert quorum.dispute_count(client, task, rnd) == 2
    with pytest.raises(FlchainError, match=rf"NothingFinalized\(task={task}\)"):
        quorum.latest_finalized(client, task)

    started = time.monotonic()
    with pytest.raises(FlchainError) as waited:
        quorum.wait_finalized(client, task, rnd, timeout=60)
    assert time.monotonic() - started < 5
    message = str(waited.value)
    assert "\n" not in message and f"round {rnd} of task {task}" in message and "disputed" in message
    with pytest.raises(FlchainError, match=f"round {rnd} of task {task} is disputed"):
        quorum.require_finalized(client, task, rnd)

    findings = _disputes(audit_task(client, task), rnd)
    failed = [f for f in findings if not f.ok]
    assert failed == findings and len(failed) == 3, findings
    verdict = next(f for f in failed if "never final" in f.detail)
    assert f"{v2.address}: leaf 3: weight 120 committed, 80 signed" in verdict.detail
    assert f"{v3.address}: aggregate differs" in verdict.detail
    named = {f.detail.split()[0] for f in failed if "attested a round the quorum disputed" in f.detail}
    assert named == {liar.address, late.address}

    # The watcher decodes the new events, the terminal renders them, the dashboard marks the round.
    events = [e for e in ChainWatcher(client, tmp_path / "cursor.json").poll() if e.args.get("task") == task]
    kinds = [e.kind for e in events]
    assert kinds.count("derivation_attested") == 2 and kinds.count("dispute") == 2
    assert kinds.count("round_disputed") == 1 and "round_finalized" not in kinds
    lines = [describe_event(e) for e in events if e.kind in ("derivation_attested", "round_disputed")]
    assert len(lines) == 3 and all(line.startswith("block ") for line in lines), lines
    assert lines[0].endswith(f"task {task} round {rnd}: {liar.address} re-derived the round from its updates")
    assert lines[1].endswith(f"round {rnd} of task {task} disputed by 2 validators: it is not final")
    view = LedgerView()
    view.apply(events)
    [row] = [r for r in view.snapshot(ChainFacts())["rounds"] if r["round"] == rnd]
    assert row["disputed"] and not row["finalized"] and row["attestations"] == 2
    assert [d["reason"] for d in row["disputes"]] == [
        "leaf 3: weight 120 committed, 80 signed",
        "aggregate differs",
    ]


def test_finality_is_withdrawn_and_latest_finalized_walks_back(rounds: Rounds) -> None:
    client, task, (v1, v2, v3, _) = rounds.client, rounds.task, rounds.validators
    base, base_hash, _ = rounds.commit(verified=False)
    quorum.attest(client, v1, task, base, base_hash, 800_000)
    quorum.attest(client, v2, task, base, base_hash, 800_000)
    skipped, _, _ = rounds.commit(verified=True)  # never attested
    rnd, model, root = rounds.commit(verified=True)
    quorum.attest_verified(client, v1, task, rnd, model, root, 900_000)
    quorum.attest_verified(client, v2, task, rnd, model, root, 900_000)
    assert quorum.is_finalized(client, task, rnd) and quorum.latest_finalized(client, task) == rnd

    # New evidence: v1, which attested, disputes the round too, with v3: a quorum of disputes.
    quorum.dispute(client, v1, task, rnd, b"", "node 0xab's omission complaint is not disclosed")
    quorum.dispute(client, v3, task, rnd, b"", "aggregate differs")
    assert quorum.is_disputed(client, task, rnd) and not quorum.is_finalized(client, task, rnd)
    on_chain = client.call(quorum.quorum_contract(client).functions.latestFinalized(task))
    assert on_chain == rnd  # the contract keeps the newest round that reached the quorum (documented)
    assert not quorum.is_finalized(client, task, skipped)
    assert quorum.latest_finalized(client, task) == base  # walks back past the disputed and the unattested
    with pytest.raises(FlchainError, match=f"no finalized round of task {task} among rounds {rnd}-{rnd}"):
        quorum.latest_finalized(client, task, walk=1)  # the walk is bounded
    with pytest.raises(FlchainError, match="disputed"):
        quorum.wait_finalized(client, task, rnd, timeout=60)

    findings = _disputes(audit_task(client, task), rnd)
    assert findings and not any(f.ok for f in findings), findings
    named = [f.detail for f in findings if "attested a round the quorum disputed" in f.detail]
    assert named == [f"{v2.address} attested a round the quorum disputed"]  # v1 disputed it itself


def test_dispute_rules(rounds: Rounds) -> None:
    client, task, (v1, *_) = rounds.client, rounds.task, rounds.validators
    contract = quorum.quorum_contract(client)
    rnd, _, _ = rounds.commit(verified=False)
    with pytest.raises(FlchainError, match=rf"UnknownRound\(task={task}, round={rnd + 1}\)"):
        quorum.dispute(client, v1, task, rnd + 1, b"", "not committed")
    too_long = "x" * (quorum.MAX_REASON_BYTES + 1)
    with pytest.raises(FlchainError, match=rf"ReasonTooLong\(length={quorum.MAX_REASON_BYTES + 1}\)"):
        client.transact(v1, contract.functions.dispute(task, rnd, bytes(32), too_long))
    stranger = Account.create()
    client.fund(rounds.chain.admin, stranger.address, bootstrap.NODE_FUNDS_WEI)
    with pytest.raises(FlchainError, match=r"lacks VALIDATOR_ROLE \(AccessControlUnauthorizedAccount\)"):
        quorum.dispute(client, stranger, task, rnd, b"", "not a validator")
    assert quorum.dispute_count(client, task, rnd) == 0

    # The wrapper cuts a long reason to 200 UTF-8 bytes without splitting a character.
    # A lone surrogate (from a badly decoded file name, say) becomes '?' instead of an encoding error.
    receipt = quorum.dispute(client, v1, task, rnd, b"", "\ud800" + "é" * 150)
    [said] = client.events(contract, "Disputed", receipt)
    assert said["reason"] == "?" + "é" * 99 and len(said["reason"].encode()) == quorum.MAX_REASON_BYTES - 1
    assert said["leaf"] == bytes(32)
    with pytest.raises(FlchainError, match=rf"AlreadyDisputed\(task={task}, round={rnd}, validator="):
        quorum.dispute(client, v1, task, rnd, b"", "again")
    with pytest.raises(FlchainError, match="at most 32 bytes"):
        quorum.dispute(client, v1, task, rnd, bytes(33), "a leaf too long")
    assert quorum.dispute_count(client, task, rnd) == 1 and not quorum.is_disputed(client, task, rnd)
