"""Verified rounds on a real chain: validators re-derive each round from the node-signed updates and
attest "derivation correct", or dispute naming the leaf; nodes find their own update and complain when it
was left out. A dishonest coordinator is played by committing cooked rounds through the real committer:
it drops an update, reweights one, alters a score, swaps in an update nobody signed. A lying validator is
outvoted; a node that signs two updates for one round has its complaint refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from fl_chain.chain import quorum
from fl_chain.coordinator.anchored_steps import filter_backdoors
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.screening import Screened
from fl_chain.defence import derivation
from fl_chain.node.inclusion import check_inclusion
from fl_chain.protocol.manifest import RoundManifest
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.update_signing import RoundContext, SignedUpdate, sign_ticket, sign_update
from fl_chain.verify.audit import audit_task
from fl_chain.verify.validator import Attestation, Dispute, Validator
from tests.chainutil import new_nodes
from tests.verified_helpers import derive, open_verified_task, quorum_validators


@dataclass
class Federation:
    """A task on a real chain with registered nodes, three validators (quorum 2) and a coordinator that
    builds verified rounds the way ChainStrategy does, optionally cooking them before the commit."""

    chain: object
    committer: RoundCommitter
    nodes: list[LocalAccount]
    validators: list[Validator]
    model: dict[str, np.ndarray]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    spread: float = 0.1  # std of the nodes' updates around 0.05 per coordinate
    signed: dict[int, dict[str, SignedUpdate]] = field(default_factory=dict)
    tickets: dict[int, dict[str, str]] = field(default_factory=dict)  # the coordinator's, per round and node

    @property
    def client(self):
        return self.chain.client

    def round(
        self,
        number: int,
        cook: Callable | None = None,
        skip_claims: tuple[str, ...] = (),
        screen: Callable[[Screened], None] | None = None,
        stretch: tuple[float, ...] = (),
    ) -> RoundManifest:
        """Every node trains and signs; the coordinator screens nothing out (or what `screen` leaves out
        and clips), scores by cosine, aggregates, builds the manifest, lets `cook(screened, manifest)`
        tamper, and commits. `stretch[i]`: node i's update is that multiple of what it trained."""
        context = RoundContext(
            self.client.deployment.chain_id, self.client.ledger.address, self.committer.task, number
        )
        screened = Screened()
        self.signed[number] = {}
        self.tickets[number] = {
            n.address: sign_ticket(self.committer.coordinator, *vars(context).values(), n.address)
            for n in self.nodes
        }
        for i, node in enumerate(self.nodes):
            factor = stretch[i] if i < len(stretch) else 1.0
            arrays = {
                k: (v + factor * self.rng.normal(0.05, self.spread, v.shape)).astype(v.dtype)
                for k, v in self.model.items()
            }
            signed = sign_update(
                node, *vars(context).values(), hash_arrays(arrays), int(self.rng.integers(50, 150))
            )
            self.signed[number][node.address] = signed
            if node.address in skip_claims:  # the coordinator pretends it never got this reply
                continue
            screened.claims[node.address] = screened.signed[node.address] = signed
            screened.updates[node.address] = screened.originals[node.address] = arrays
            screened.weights[node.address] = float(signed.weight)
        if screen is not None:
            screen(screened)
        model, scores, built = derive(context, screened, self.model, self.committer.parent_hash)
        if cook is not None:
            model, scores = cook(built, self.model, model, scores)
        commit = self.committer.commit(number, model, scores, verified=built)
        assert commit.updates_root == built.root
        self.model = model
        return built.manifest

    def judge(self, number: int) -> list[Attestation | Dispute]:
        """Each validator handles the round's commit, as its watcher would deliver it."""
        return [v.attest(self.committer.task, number) for v in self.validators]


@pytest.fixture()
def federation(chain, tmp_path: Path) -> Federation:
    client = chain.client
    committer, model = open_verified_task(client, chain.coordinator, tmp_path / "store", b"\x01" * 32, 1)
    admin = Account.from_key(client.deployment.dev_keys["admin"])
    validators = quorum_validators(client, admin, committer.task)
    return Federation(chain, committer, new_nodes(chain, 4), validators, model)


def _task(f: Federation) -> int:
    return f.committer.task


def test_an_honest_verified_round_is_rederived_attested_and_finalized(federation: Federation) -> None:
    f = federation
    manifest = f.round(1)
    verdicts = f.judge(1)
    assert all(isinstance(v, Attestation) and v.derivation_seconds > 0 for v in verdicts), verdicts
    assert quorum.is_finalized(f.client, _task(f), 1) and not quorum.is_disputed(f.client, _task(f), 1)
    assert len(manifest.included) == 4 and not manifest.excluded
    for node in f.nodes:  # each node finds its own leaf, with the weight it signed
        inclusion = check_inclusion(f.client, node, f.signed[1][node.address], f.tickets[1][node.address])
        assert inclusion.status == "included", inclusion
    store = f.committer.store
    assert all(
        (store.updates_directory / e.update[2:]).stat().st_mode & 0o077 == 0 for e in manifest.included
    )
    assert store.updates_directory.stat().st_mode & 0o077 == 0  # update blobs: the owner (validators) only
    findings = audit_task(f.client, _task(f))
    assert all(x.ok for x in findings), [x for x in findings if not x.ok]
    assert any(x.check == "derivation" and x.ok for x in findings)


def test_a_dropped_update_is_found_by_its_node_and_disputed(federation: Federation) -> None:
    f = federation
    f.round(1)
    f.judge(1)
    dropped = f.nodes[2]
    f.round(2, skip_claims=(dropped.address,))
    verdicts = f.judge(2)  # the manifest is self-consistent: the drop is invisible to the validators alone
    assert all(isinstance(v, Attestation) for v in verdicts)
    assert quorum.is_finalized(f.client, _task(f), 2)
    inclusion = check_inclusion(
        f.client, dropped, f.signed[2][dropped.address], f.tickets[2][dropped.address]
    )
    assert inclusion.status == "omitted" and inclusion.tx, inclusion
    for node in f.nodes[:2]:
        assert (
            check_inclusion(f.client, node, f.signed[2][node.address], f.tickets[2][node.address]).status
            == "included"
        )
    complaint = _complaint_event(f, 2)
    disputes = [v.handle(complaint) for v in f.validators]
    assert all(isinstance(d, Dispute) and "omitted" in d.reason for d in disputes), disputes
    assert disputes[0].leaf.endswith(dropped.address[2:].lower())  # the dispute names the node
    assert quorum.is_disputed(f.client, _task(f), 2) and not quorum.is_finalized(f.client, _task(f), 2)
    failed = [x for x in audit_task(f.client, _task(f)) if not x.ok]
    assert any("round 2" in x.where and dropped.address in x.detail for x in failed), failed


def _complaint_event(f: Federation, number: int):
    from fl_chain.chain.watcher import ChainWatcher

    events = ChainWatcher(f.client, None, from_block=f.client.deployment.deployed_block).poll()
    (complaint,) = [e for e in events if e.name == "UpdateOmitted" and int(e.args["round"]) == number]
    return complaint


def _cooked(f: Federation, number: int, cook) -> list[Attestation | Dispute]:
    f.round(1)
    f.judge(1)
    f.round(number, cook=cook)
    return f.judge(number)


def _reweight(built, previous, model, scores):
    """The coordinator weighs its friend's update 3x in the aggregate and says nothing."""
    m = built.manifest
    friend = m.included[0].node
    weights = derivation.effective_weights({e.node: e.claimed for e in m.included}, m.claim_cap)
    weights[friend] *= 3
    updates = {e.node: built.blobs[e.update] for e in m.included}
    cooked = derivation.aggregate(previous, updates, weights)
    built.manifest = replace(m, model="0x" + hash_arrays(cooked).hex())
    return cooked, scores


def _rescore(built, previous, model, scores):
    """The coordinator halves one node's score, on-chain and in the leaf alike."""
    m = built.manifest
    victim = m.included[1]
    scores = {**scores, victim.node: victim.score // 2}
    entries = tuple(replace(e, score=e.score // 2) if e is victim else e for e in m.entries)
    built.manifest = replace(m, entries=entries)
    return model, scores


def _swap_in(built, previous, model, scores):
    """The coordinator replaces one node's update by arrays of its own, signed by itself."""
    m = built.manifest
    victim = m.included[2]
    forger = Account.create()
    fake = {k: v * 0 for k, v in built.blobs[victim.update].items()}
    digest = hash_arrays(fake)
    signed = sign_update(forger, m.chain_id, m.ledger, m.task, m.round, digest, victim.claimed)
    built.blobs["0x" + digest.hex()] = fake
    entries = tuple(
        replace(e, update="0x" + digest.hex(), signature=signed.signature) if e is victim else e
        for e in m.entries
    )
    built.manifest = replace(m, entries=entries)
    return model, scores


@pytest.mark.parametrize(
    ("cook", "expected"),
    [(_reweight, "aggregate to"), (_rescore, "score of"), (_swap_in, "not signed by it")],
    ids=["reweight", "altered-score", "unsigned-swap-in"],
)
def test_a_cooked_round_is_disputed_and_never_finalized(federation: Federation, cook, expected: str) -> None:
    f = federation
    verdicts = _cooked(f, 2, cook)
    assert all(isinstance(v, Dispute) and expected in v.reason for v in verdicts), verdicts
    assert quorum.is_disputed(f.client, _task(f), 2) and not quorum.is_finalized(f.client, _task(f), 2)
    failed = [x for x in audit_task(f.client, _task(f)) if not x.ok]
    assert any("round 2" in x.where and x.check == "derivation" for x in failed), failed


def test_a_lying_validator_is_outvoted_and_visible(federation: Federation) -> None:
    f = federation
    honest_a, honest_b, liar = f.validators
    f.round(1)
    honest_a.attest(_task(f), 1)
    quorum.dispute(f.client, liar.account, _task(f), 1, bytes(32), "says the round is cooked")
    honest_b.attest(_task(f), 1)
    assert quorum.is_finalized(f.client, _task(f), 1)  # one false dispute does not block an honest round
    f.round(2, cook=_rescore)
    record = f.client.call(f.client.ledger.functions.getRound(_task(f), 2))
    root = f.client.call(f.client.ledger.functions.updatesRoot(_task(f), 2))
    quorum.attest_verified(f.client, liar.account, _task(f), 2, bytes(record[0]), bytes(root), 900_000)
    assert isinstance(honest_a.attest(_task(f), 2), Dispute) and isinstance(
        honest_b.attest(_task(f), 2), Dispute
    )
    assert not quorum.is_finalized(f.client, _task(f), 2)  # its attestation alone finalizes nothing
    findings = audit_task(f.client, _task(f))
    assert any(liar.account.address in x.detail and not x.ok for x in findings if "round 2" in x.where)


def test_a_node_that_signed_two_updates_for_one_round_is_refused(federation: Federation) -> None:
    f = federation
    f.round(1)
    f.judge(1)
    node = f.nodes[0]
    other = sign_update(
        node, f.client.deployment.chain_id, f.client.ledger.address, _task(f), 1, b"\x09" * 32, 77
    )
    assert check_inclusion(f.client, node, other, f.tickets[1][node.address]).status == "omitted"  # 2nd one
    complaint = _complaint_event(f, 1)
    assert [v.handle(complaint) for v in f.validators] == [None, None, None]  # refused: no dispute
    assert quorum.is_finalized(f.client, _task(f), 1)
    failed = [x for x in audit_task(f.client, _task(f)) if not x.ok]
    assert any("two different updates" in x.detail and node.address in x.detail for x in failed), failed


def constant_evaluate(server_round: int, arrays) -> object:
    """A Flower App's evaluate_fn for the CLI test's toy model (its accuracy is not what is tested)."""
    from flwr.app import MetricRecord

    return MetricRecord({"accuracy": 0.5})


def test_flchain_validator_rederives_and_disputes_through_the_cli(
    federation: Federation,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`flchain validator --once --updates URI`: re-derives an honest verified round and attests it,
    disputes a cooked one (on-chain), and says which."""
    from fl_chain.chain.identity import write_keystore
    from fl_chain.cli import run
    from tests.chainutil import home_with_deployment

    f = federation
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", "pw")
    home = home_with_deployment(f.chain, tmp_path)
    key = tmp_path / "validator.json"
    address = write_keystore(key, "pw")
    f.client.fund(f.chain.admin, address, 10**18)
    assert run(["node", "validator-role", address, "--home", str(home)]) == 0
    f.round(1)
    f.round(2, cook=_rescore)
    updates = f.committer.store.updates_directory.as_uri() + "/"
    evaluate = "tests.test_verified_rounds:constant_evaluate"
    args = ["validator", "--key", str(key), "--once", "--task", str(_task(f)), "--evaluate", evaluate]
    capsys.readouterr()
    assert run([*args, "--updates", updates, "--home", str(home)]) == 0
    out = capsys.readouterr()
    assert f"attested task {_task(f)} round 1" in out.out and "derivation re-checked" in out.out, out
    assert f"disputed task {_task(f)} round 2" in out.err and "score of" in out.err, out
    assert quorum.has_attested(f.client, _task(f), 1, address)
    assert quorum.has_disputed(f.client, _task(f), 2, address)


def test_a_node_whose_update_was_swapped_complains(federation: Federation) -> None:
    """The node itself sees a swapped update: its leaf names an update it never signed."""
    f = federation
    f.round(1)
    f.judge(1)
    manifest = f.round(2, cook=_swap_in)
    (victim,) = [
        n for n in f.nodes if manifest.entry_of(n.address).update_hash != f.signed[2][n.address].update_hash
    ]
    inclusion = check_inclusion(f.client, victim, f.signed[2][victim.address], f.tickets[2][victim.address])
    assert inclusion.status == "omitted" and inclusion.tx, inclusion
    assert all(isinstance(v, Dispute) for v in f.judge(2))


def test_updates_that_cannot_be_read_yet_get_no_verdict_until_they_can(federation: Federation) -> None:
    """A validator that cannot read a round's updates (the store is away) neither attests nor disputes:
    an outage is no evidence. It keeps the round and re-derives it once the updates are back."""
    from fl_chain.chain.published import Unavailable
    from fl_chain.chain.watcher import ChainWatcher

    f = federation
    validator = f.validators[0]
    watcher = ChainWatcher(f.client, None, from_block=f.client.w3.eth.block_number + 1)
    f.round(1)
    updates = f.committer.store.updates_directory
    away = updates.with_name("updates-away")
    updates.rename(away)
    (commit,) = [e for e in watcher.poll() if e.name == "RoundCommitted"]
    with pytest.raises(Unavailable, match="cannot re-derive the round yet"):
        validator.handle(commit)
    assert not quorum.has_attested(f.client, _task(f), 1, validator.account.address)
    assert not quorum.has_disputed(f.client, _task(f), 1, validator.account.address)
    assert validator.retry(every=0) and validator.pending  # still away: an error, kept
    (derivation,) = [x for x in audit_task(f.client, _task(f)) if x.check == "derivation"]
    assert derivation.ok and "not re-derived here" in derivation.detail  # a public auditor's view
    away.rename(updates)
    (done,) = validator.retry(every=0)
    assert isinstance(done, Attestation) and done.round == 1 and not validator.pending


def test_a_verified_round_without_its_manifest_fails_the_audit(federation: Federation) -> None:
    f = federation
    f.round(1)
    for manifest in (f.committer.store.directory / "rounds").iterdir():
        manifest.unlink()
    (derivation,) = [x for x in audit_task(f.client, _task(f)) if x.check == "derivation"]
    assert not derivation.ok and "manifest unavailable" in derivation.detail


def test_a_round_through_the_backdoor_filter_is_rederived_and_finalized(federation: Federation) -> None:
    """The filter's exclusions are disclosed like any other and validators re-derive the round; a verified
    round does not clip (the task's rules declare no clip, validators would dispute one)."""
    f = federation
    root = np.concatenate([np.full(v.size, 0.05) for v in f.model.values()])
    previous = {k: np.asarray(v) for k, v in f.model.items()}
    f.spread = 0.01  # honest updates close together, as on IID data
    # node 0 sends a long update against everyone's direction, node 1 a long honest one (not clipped)
    manifest = f.round(
        1, stretch=(-3.0, 2.0), screen=lambda s: filter_backdoors(s, {}, root, previous, clip=False)
    )
    assert [e.node for e in manifest.excluded] == [f.nodes[0].address]
    assert len(manifest.included) == 3 and all(e.clip == 1 for e in manifest.included)
    verdicts = f.judge(1)
    assert all(isinstance(v, Attestation) for v in verdicts), verdicts
    assert quorum.is_finalized(f.client, _task(f), 1)
