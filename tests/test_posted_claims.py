"""Omission is provable: a sampled node posts its signed claim on-chain before its verified round is
committed (ModelLedger.postClaim -> ClaimPosted), so a coordinator that receives the reply, drops it and
records the node as missed (or says nothing of it) is caught by the honest validators, who dispute the
round, and by `flchain audit`. Real anvil; the coordinator is played by the real committer and
verified_round.build, lying by leaving a posting node out."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import charges, ledger, quorum, update_claims
from fl_chain.chain.setup import bootstrap
from fl_chain.coordinator import verified_round
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.screening import Screened
from fl_chain.errors import FlchainError
from fl_chain.node.signer import AgentSigner
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.protocol.manifest import canonical
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.update_signing import RoundContext, SignedUpdate, sign_ticket, sign_update
from fl_chain.runners.signing_agent import SigningAgent
from fl_chain.verify import round_check
from fl_chain.verify.audit import audit_task
from fl_chain.verify.validator import Attestation, Dispute, Validator
from tests.chainutil import new_nodes
from tests.verified_helpers import RULES, derive, open_verified_task, quorum_validators, verified_demo_config


def _context(client, task: int, rnd: int) -> RoundContext:
    return RoundContext(client.deployment.chain_id, client.ledger.address, task, rnd)


def _ticket(coordinator: LocalAccount, context: RoundContext, node: str) -> str:
    return sign_ticket(coordinator, context.chain_id, context.ledger, context.task, context.round, node)


def _claim(node: LocalAccount, context: RoundContext, seed: int) -> SignedUpdate:
    return sign_update(node, *vars(context).values(), bytes([seed]) * 32, 100 + seed)


def test_post_claim_is_accepted_only_on_time_from_a_sampled_eligible_node(chain) -> None:
    """Before: ModelLedger had no postClaim (a node could only complain after the commit, which the
    round survived). Now the claim is refused for a bad ticket, a committed round, a task not in Verified
    mode and an ineligible node; a good one emits ClaimPosted at flat gas and writes nothing."""
    client, coordinator = chain.client, chain.coordinator
    task = ledger.create_task(
        client, coordinator, b"\x07" * 32, "file:///nowhere/", LedgerMode.VERIFIED, RULES.rules_hash()
    )
    plain = ledger.create_task(client, coordinator, b"\x08" * 32, "file:///nowhere/", LedgerMode.PLAIN)
    nodes = new_nodes(chain, 4)
    (pending,) = new_nodes(chain, 1, approve=False)
    ledger.commit_round(client, coordinator, task, 0, b"\x10" * 32, "", ledger.ZERO_HASH, {})
    one = _context(client, task, 1)

    gas = []
    for i, node in enumerate(nodes):
        receipt = update_claims.post_claim(
            client, node, _claim(node, one, i + 1), _ticket(coordinator, one, node.address)
        )
        (event,) = client.ledger.events.ClaimPosted().process_receipt(receipt)
        assert (event["args"]["task"], event["args"]["round"], event["args"]["node"]) == (
            task,
            1,
            node.address,
        )
        assert event["args"]["updateHash"] == bytes([i + 1]) * 32 and event["args"]["weight"] == 101 + i
        gas.append(int(receipt["gasUsed"]))
    print(f"postClaim gasUsed per node: {gas}")
    assert max(gas) - min(gas) < 500 and max(gas) < 40_000, gas  # flat: one event, no storage
    posted = update_claims.posted_claims(client, task, 1)
    assert set(posted) == {n.address.lower() for n in nodes}

    node = nodes[0]
    claim = _claim(node, one, 9)
    for forged in (
        sign_ticket(node, *vars(one).values(), node.address),  # not the task owner's signature
        _ticket(coordinator, one, nodes[1].address),  # another node's ticket
        _ticket(coordinator, _context(client, task, 2), node.address),  # another round's ticket
    ):
        with pytest.raises(FlchainError, match=rf"NotSampled\(task={task}, round=1"):
            update_claims.post_claim(client, node, claim, forged)
    with pytest.raises(FlchainError, match="NotEligible"):
        update_claims.post_claim(
            client, pending, _claim(pending, one, 5), _ticket(coordinator, one, pending.address)
        )
    two = _context(client, task, 2)
    with pytest.raises(FlchainError, match=rf"ClaimNotOnTime\(task={task}, expected=1, given=2\)"):
        update_claims.post_claim(client, node, _claim(node, two, 1), _ticket(coordinator, two, node.address))

    ledger.commit_round(
        client, coordinator, task, 1, b"\x11" * 32, "", b"\x10" * 32, {}, updates_root=b"\x01" * 32
    )
    with pytest.raises(FlchainError, match=rf"ClaimNotOnTime\(task={task}, expected=2, given=1\)"):
        # round 1 is committed: too late
        update_claims.post_claim(client, node, claim, _ticket(coordinator, one, node.address))

    ledger.commit_round(client, coordinator, plain, 0, b"\x12" * 32, "", ledger.ZERO_HASH, {})
    on_plain = _context(client, plain, 1)
    with pytest.raises(FlchainError, match=rf"WrongMode\(task={plain}"):
        update_claims.post_claim(
            client, node, _claim(node, on_plain, 1), _ticket(coordinator, on_plain, node.address)
        )
    with pytest.raises(FlchainError, match="UnknownTask"):
        unknown = _context(client, 99, 1)
        ticket = _ticket(coordinator, unknown, node.address)
        update_claims.post_claim(client, node, _claim(node, unknown, 1), ticket)


@dataclass
class Rounds:
    """A verified task with four registered nodes and three validators (quorum 2); the coordinator
    builds each round the way ChainStrategy does (verified_round.build, RoundCommitter), and can lie."""

    chain: object
    committer: RoundCommitter
    nodes: list[LocalAccount]
    validators: list[Validator]
    model: dict[str, np.ndarray]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    @property
    def client(self):
        return self.chain.client

    def round(
        self,
        number: int,
        drop: str | None = None,
        record_missed: bool = False,
        exclude: str | None = None,
        silent: str | None = None,
        quiet: str | None = None,
        commit: Callable | None = None,
    ):
        """Every node trains, signs and posts its claim. A lying coordinator leaves `drop` out of the
        manifest (and with `record_missed` commits it as missed); an honest one discloses `exclude` as
        excluded and, like ChainStrategy (train_round.py), discloses every posted claim it did not
        receive (`silent`: a node that posted and never replied) instead of recording it missed.
        `quiet` neither posts nor replies (recorded missed). `commit(send)`: runs the commit, `send()`."""
        context = _context(self.client, self.committer.task, number)
        screened = Screened()
        for node in self.nodes:
            arrays = {
                k: (v + self.rng.normal(0.05, 0.1, v.shape)).astype(v.dtype) for k, v in self.model.items()
            }
            signed = sign_update(
                node, *vars(context).values(), hash_arrays(arrays), int(self.rng.integers(50, 150))
            )
            if node.address == quiet:
                continue
            update_claims.post_claim(
                self.client, node, signed, _ticket(self.committer.coordinator, context, node.address)
            )
            if node.address in (drop, silent):  # never received (silent), or pretended so (drop)
                continue
            screened.claims[node.address] = signed
            if node.address == exclude:
                screened.dropped[node.address] = "an outlier update"
                continue
            screened.signed[node.address] = signed
            screened.updates[node.address] = screened.originals[node.address] = arrays
            screened.weights[node.address] = float(signed.weight)
        model, scores, built = derive(context, screened, self.model, self.committer.parent_hash)
        missed = [drop] if drop and record_missed else []
        if drop is None:  # the honest coordinator's last step before the commit
            missed = [n for n in (silent, quiet) if n]
            posted = update_claims.posted_claims(self.client, context.task, number)
            built, missed = verified_round.disclose_posted(built, posted, missed)
        send = partial(self.committer.commit, number, model, scores, missed=missed, verified=built)
        send() if commit is None else commit(send)
        self.model = model
        return built.manifest

    def judge(self, number: int) -> list[Attestation | Dispute]:
        return [v.attest(self.committer.task, number) for v in self.validators]


@pytest.fixture()
def rounds(chain, tmp_path: Path) -> Rounds:
    client = chain.client
    committer, model = open_verified_task(client, chain.coordinator, tmp_path / "store", b"\x01" * 32, 1)
    validators = quorum_validators(client, chain.admin, committer.task)
    return Rounds(chain, committer, new_nodes(chain, 4), validators, model)


def test_an_honest_round_with_posted_claims_is_attested(rounds: Rounds) -> None:
    """Every node posted its claim; one reply is disclosed as excluded with its reason (not missed): the
    validators re-derive and attest, the round finalizes, the audit's "posted claims" check passes.
    (Before: no ClaimPosted existed; this is the control for the dispute test below.)"""
    r = rounds
    excluded = r.nodes[3].address
    manifest = r.round(1, exclude=excluded)
    assert manifest.entry_of(excluded) is not None and not manifest.entry_of(excluded).included
    verdicts = r.judge(1)
    assert all(isinstance(v, Attestation) for v in verdicts), verdicts
    assert quorum.is_finalized(r.client, r.committer.task, 1)
    findings = audit_task(r.client, r.committer.task)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    (posted,) = [f for f in findings if f.check == "posted claims"]
    assert "4 claims posted on time, all disclosed" in posted.detail


def test_a_node_that_posts_and_never_replies_cannot_get_an_honest_round_disputed(rounds: Rounds) -> None:
    """A node posts its claim and sends no reply. Before: the honest coordinator recorded it missed, and
    (with posted claims) every validator would dispute the honest round. Now ChainStrategy discloses the
    posted claim as excluded (unsigned: the node's transaction is its signature) and does not record the
    node missed: the validators attest. A coordinator that invents such an entry for a node that posted
    no claim is disputed."""
    r = rounds
    silent = r.nodes[2].address
    manifest = r.round(1, silent=silent)
    entry = manifest.entry_of(silent)
    assert entry is not None and not entry.included and entry.signature == ""
    assert entry.reason == verified_round.POSTED_NOT_RECEIVED
    assert silent.lower() not in charges.missed_in(r.client, r.committer.task, 1)
    verdicts = r.judge(1)
    assert all(isinstance(v, Attestation) for v in verdicts), verdicts
    assert quorum.is_finalized(r.client, r.committer.task, 1)
    findings = audit_task(r.client, r.committer.task)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]

    made_up = replace(entry, update="0x" + "cd" * 32)  # a claim the node never posted
    posted = {silent.lower(): (entry.update_hash, entry.claimed)}
    differences = round_check._against_chain(
        r.client,
        replace(manifest, entries=canonical([*(e for e in manifest.entries if e is not entry), made_up])),
        r.committer.task,
        1,
        posted,
    )
    assert any("posted no such claim" in d.what for d in differences), differences


def test_a_claim_front_running_the_commit_in_its_block_does_not_dispute_the_round(rounds: Rounds) -> None:
    """A sampled node never replies; when it sees the honest commit (which records it missed) pending, it
    posts its claim with a higher tip so that it lands first in the same block. Before (every ClaimPosted
    of the round counted): the validators disputed the honest round ("recorded missed"). Now a claim
    mined in the commit's own block does not bind the coordinator, who cannot have seen it: attested."""
    r = rounds
    attacker = r.nodes[0]
    w3, client = r.client.w3, r.client

    def front_run(send: Callable) -> None:
        context = _context(client, r.committer.task, 1)
        claim = _claim(attacker, context, 7)
        fn = client.ledger.functions.postClaim(
            r.committer.task, 1, claim.update_hash, claim.weight,
            bytes.fromhex(_ticket(r.committer.coordinator, context, attacker.address)[2:]),
        )  # fmt: skip
        w3.provider.make_request("evm_setAutomine", [False])
        try:
            sender = threading.Thread(target=send)
            sender.start()
            deadline = time.monotonic() + 30
            while not w3.eth.get_block("pending")["transactions"] and time.monotonic() < deadline:
                time.sleep(0.05)
            tip = 100 * 10**9
            tx = fn.build_transaction(
                {"from": attacker.address, "nonce": w3.eth.get_transaction_count(attacker.address),
                 "gas": 100_000, "maxFeePerGas": 2 * tip, "maxPriorityFeePerGas": tip,
                 "chainId": client.deployment.chain_id},
            )  # fmt: skip
            w3.eth.send_raw_transaction(attacker.sign_transaction(tx).raw_transaction)
            w3.provider.make_request("evm_mine", [])
        finally:
            w3.provider.make_request("evm_setAutomine", [True])
        sender.join(60)

    r.round(1, quiet=attacker.address, commit=front_run)
    (event,) = client.logs(client.ledger, "ClaimPosted", task=r.committer.task, node=attacker.address)
    record = ledger.get_round(client, r.committer.task, 1)
    assert event["blockNumber"] == record.block and event["args"]["node"] == attacker.address
    assert attacker.address.lower() in charges.missed_in(client, r.committer.task, 1)
    binding = update_claims.posted_claims(client, r.committer.task, 1, before_block=record.block)
    assert attacker.address.lower() not in binding and len(binding) == 3
    verdicts = r.judge(1)
    assert all(isinstance(v, Attestation) for v in verdicts), verdicts
    assert quorum.is_finalized(client, r.committer.task, 1)


@pytest.mark.parametrize(
    ("record_missed", "reason"),
    [(True, "recorded missed"), (False, "claim posted on time but omitted")],
)
def test_a_coordinator_that_drops_a_posted_reply_has_the_round_disputed(
    rounds: Rounds, record_missed: bool, reason: str
) -> None:
    """The coordinator receives a posting node's reply, leaves it out of the manifest and (or not)
    records the node missed. Before: the manifest was self-consistent, every validator attested, the
    round finalized and the node was charged a missed round (its complaint only made it "contested").
    Now the ClaimPosted event proves the claim was on time: every honest validator disputes the round,
    naming the node, it never finalizes, and the audit fails it."""
    r = rounds
    dropped = r.nodes[1]
    r.round(1, drop=dropped.address, record_missed=record_missed)
    if record_missed:
        assert dropped.address.lower() in charges.missed_in(r.client, r.committer.task, 1)
    verdicts = r.judge(1)
    assert all(isinstance(v, Dispute) and v.reason.startswith(reason) for v in verdicts), verdicts
    assert all(dropped.address in v.reason and v.leaf.endswith(dropped.address[2:].lower()) for v in verdicts)
    assert quorum.is_disputed(r.client, r.committer.task, 1) and not quorum.is_finalized(
        r.client, r.committer.task, 1
    )
    failed = [f for f in audit_task(r.client, r.committer.task) if not f.ok]
    assert any(
        f.check == "posted claims" and reason in f.detail and dropped.address in f.detail for f in failed
    ), failed


def test_the_signing_agent_posts_only_the_claim_it_signed_once_per_round(
    chain, request: pytest.FixtureRequest
) -> None:
    """`flchain client --post-claims`: the agent (which holds the key) posts the update claim it just
    signed, once per round; without the option, or for a claim it did not sign, it refuses in one line.
    Before: the agent knew no "claim" statement and never sent a transaction."""
    client, coordinator = chain.client, chain.coordinator
    task = ledger.create_task(
        client, coordinator, b"\x09" * 32, "file:///nowhere/", LedgerMode.VERIFIED, RULES.rules_hash()
    )
    ledger.commit_round(client, coordinator, task, 0, b"\x10" * 32, "", ledger.ZERO_HASH, {})
    (node,) = new_nodes(chain, 1)
    context = _context(client, task, 1)
    ticket = _ticket(coordinator, context, node.address)
    update = {"chain": context.chain_id, "ledger": context.ledger, "task": task, "round": 1}
    update |= {"hash": "0x" + "ab" * 32, "weight": 120}
    claim = {**update, "statement": "claim", "ticket": ticket}
    me = os.getpid()
    for post in (False, True):
        agent = SigningAgent(node, client, post_claims=post)
        request.addfinalizer(agent.stop)  # its socket directory
        agent.admit(me, 1, "f" * 64)
        if not post:
            refused = agent.answer(me, claim)
            assert not refused["ok"] and "--post-claims" in refused["error"]
            continue
        refused = agent.answer(me, claim)  # nothing signed yet
        assert not refused["ok"] and "signed last" in refused["error"]
        assert agent.answer(me, {**update, "statement": "update"})["ok"]
        other = agent.answer(me, {**claim, "weight": 121})
        assert not other["ok"] and "signed last" in other["error"]
        # The mod's side, over the agent's Unix socket (this process is the admitted app process).
        signer = AgentSigner(str(agent.start()))
        signed = signer.sign_update(context.chain_id, context.ledger, task, 1, b"\xab" * 32, 120)
        assert signer.post_claim(signed, ticket).startswith("0x")
        with pytest.raises(FlchainError, match="already posted its claim for round 1"):
            signer.post_claim(signed, ticket)
    (node_posted,) = update_claims.posted_claims(client, task, 1).items()
    assert node_posted == (node.address.lower(), (bytes.fromhex("ab" * 32), 120))


def test_a_simulated_federation_posts_every_nodes_claim(tmp_path: Path) -> None:
    """The Simulation Engine with post-claims on: every node of every verified round posted its claim
    before the round was committed, the validators attest every round and the audit's "posted claims"
    check passes. Before: nodes posted nothing (there was no postClaim)."""
    from fl_chain.demo import run_demo

    config = verified_demo_config(2)
    home = tmp_path / "demo"
    home.mkdir()
    local = bootstrap.start_local(home, "anvil")
    try:
        result = run_demo(config, 3, home, plot=False, validators=2, local=local, post_claims=True)
        client = local.client
        posted = {rnd: update_claims.posted_claims(client, result.task, rnd) for rnd in (1, 2)}
        commits = {e["args"]["round"]: e["blockNumber"] for e in ledger.commit_events(client, result.task)}
        logs = client.logs(client.ledger, "ClaimPosted", task=result.task)
        findings = audit_task(client, result.task)
    finally:
        local.stop()
    for report in result.reports[1:]:  # every node that trained in a round posted its claim for it
        assert len(report.participants) >= 2 and report.signed == report.participants
        assert set(posted[report.round]) == {p.lower() for p in report.participants}, (report, posted)
    assert all(e["blockNumber"] < commits[e["args"]["round"]] for e in logs)  # on time: before the commit
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert [f.where for f in findings if f.check == "posted claims"] == [
        f"task {result.task} round 1",
        f"task {result.task} round 2",
    ]
    verdicts = result.extra["attestations"]
    assert all(isinstance(v, Attestation) for v in verdicts), verdicts
    assert sorted(a.round for a in verdicts) == [0, 0, 1, 1, 2, 2]
