"""Every answered reply of a verified round is disclosed, and complaints have a deadline (issue 24, point 1).

On a real anvil, a verified task whose rounds go through the coordinator's own screening
(coordinator/screening.py), manifest (coordinator/verified_round.py) and committer; three validators,
quorum 2, and a ledger deployed with a short complaint window (WINDOW seconds) that a test passes with
evm_increaseTime + evm_mine; the chain (and its clock) is reverted to before the test afterwards.

The attack: a node replies unsigned (or signed with another key), so it is counted as answered, not
missed; then it calls complainOmitted with an update it signed separately and its ticket. Before this
change the manifest named only signed claims, the validators found neither an entry nor a "missed" record
and disputed the honest round, even after it finalized, since complaints had no deadline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from fl_chain.chain import ledger, quorum, update_claims
from fl_chain.chain.client import connect
from fl_chain.chain.setup import bootstrap
from fl_chain.chain.setup.localnode import ChainProcess
from fl_chain.chain.watcher import ChainWatcher
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.screening import ScreeningPolicy, screen_replies
from fl_chain.errors import FlchainError
from fl_chain.node.inclusion import check_inclusion
from fl_chain.protocol.manifest import EXCLUDED_SCORE, parse_manifest, reason_hash
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.update_signing import RoundContext, SignedUpdate, sign_ticket, sign_update
from fl_chain.verify import round_check
from fl_chain.verify.audit import audit_task
from fl_chain.verify.round_check import check_round, judge_complaint
from fl_chain.verify.validator import Attestation, Validator
from fl_chain.wire.records import UPDATE_RECORD, arrays_to_record
from tests.chainutil import TEST_CAPACITY
from tests.conftest import flower_server_identity
from tests.verified_helpers import derive, open_verified_task, quorum_validators, verified_demo_config

WINDOW = 120  # seconds: the ledger's complaint window in these tests (short: a test passes it)


@dataclass
class World:
    """A verified task on a real chain: five registered nodes, three validators (quorum 2) and a
    coordinator whose rounds go through the real screening, manifest and committer."""

    chain: object
    committer: RoundCommitter
    nodes: list[LocalAccount]
    validators: list[Validator]
    model: dict[str, np.ndarray]

    @property
    def client(self):
        return self.chain.client

    @property
    def task(self) -> int:
        return self.committer.task

    def context(self, number: int) -> RoundContext:
        return RoundContext(self.client.deployment.chain_id, self.client.ledger.address, self.task, number)

    def round(
        self,
        number: int,
        unsigned: tuple[str, ...] = (),
        other_key: tuple[str, ...] = (),
        infinite: tuple[str, ...] = (),
    ):
        """Every node trains and replies; those in `unsigned` send no claim, those in `other_key` a claim
        signed by a stranger's key, those in `infinite` claim inf examples (and sign nothing: no integer
        weight to sign). Screened as ChainStrategy screens, built, committed."""
        context = self.context(number)
        ids = {i + 1: n.address for i, n in enumerate(self.nodes)}
        with flower_server_identity(1):
            outgoing = {
                i: Message(RecordDict({"c": ConfigRecord({})}), dst_node_id=i, message_type="train")
                for i in ids
            }
        rng = np.random.default_rng(number)
        replies = []
        for i, node in enumerate(self.nodes, start=1):
            arrays = {k: (v + rng.normal(0.05, 0.1, v.shape)).astype(v.dtype) for k, v in self.model.items()}
            examples = float("inf") if node.address in infinite else 100
            content = RecordDict(
                {"arrays": arrays_to_record(arrays), "metrics": MetricRecord({"num-examples": examples})}
            )
            if node.address not in unsigned + infinite:
                signer = Account.create() if node.address in other_key else node
                signed = sign_update(signer, *vars(context).values(), hash_arrays(arrays), 100)
                content[UPDATE_RECORD] = ConfigRecord(
                    {"hash": "0x" + signed.update_hash.hex(), "weight": 100, "signature": signed.signature}
                )
            replies.append(Message(content, reply_to=outgoing[i]))
        screened = screen_replies(replies, ids, self.model, ScreeningPolicy(require_signed=True), context)
        model, scores, built = derive(context, screened, self.model, self.committer.parent_hash)
        self.committer.commit(number, model, scores, [], sorted(screened.penalized), built)
        self.model = model
        return built

    def finalize(self, number: int) -> None:
        """Two validators re-derive and attest the round: it is finalized."""
        done = [v.attest(self.task, number) for v in self.validators[:2]]
        assert all(isinstance(d, Attestation) for d in done), done
        assert quorum.is_finalized(self.client, self.task, number)

    def ticket(self, number: int, node: LocalAccount) -> str:
        """The coordinator's ticket sampling `node` for the round (carried by its train message)."""
        return sign_ticket(self.committer.coordinator, *vars(self.context(number)).values(), node.address)

    def separate_update(self, number: int, node: LocalAccount) -> SignedUpdate:
        """An update the node signs for the round after the fact, never sent to the coordinator."""
        return sign_update(
            node, *vars(self.context(number)).values(), keccak(text=f"never sent {number}"), 100
        )

    def pass_deadline(self, number: int) -> None:
        """Move anvil's clock past the round's complaint deadline and mine a block there."""
        deadline = update_claims.complaint_deadline(self.client, self.task, number)
        now = int(self.client.w3.eth.get_block("latest")["timestamp"])
        self.client.w3.provider.make_request("evm_increaseTime", [max(deadline - now + 1, 1)])
        self.client.w3.provider.make_request("evm_mine", [])
        assert not update_claims.complaint_window_open(self.client, self.task, number)


@pytest.fixture()
def world(anvil_process: ChainProcess, tmp_path: Path) -> Iterator[World]:
    """The world on the session's anvil; afterwards the chain is reverted to before it (evm_revert also
    puts back the clock a test moved past a deadline, so later tests see anvil's time as it was)."""
    rpc = connect(anvil_process.rpc_url).provider
    snapshot = rpc.make_request("evm_snapshot", [])["result"]
    try:
        yield _world(anvil_process, tmp_path)
    finally:
        assert rpc.make_request("evm_revert", [snapshot]).get("result") is True


def _world(anvil_process: ChainProcess, tmp_path: Path) -> World:
    chain = bootstrap.deploy_local(anvil_process, complaint_window=WINDOW)
    client = chain.client
    committer, model = open_verified_task(client, chain.coordinator, tmp_path / "store", b"\x24" * 32, 24)
    validators = quorum_validators(client, chain.admin, committer.task)
    nodes = bootstrap.register_nodes(client, 5, True, TEST_CAPACITY, funds=10**18)
    return World(chain, committer, nodes, validators, model)


def _complaints(world: World, tmp_path: Path):
    """The UpdateOmitted events as a validator's watcher delivers them."""
    return [
        e for e in ChainWatcher(world.client, tmp_path / "cursor.json").poll() if e.name == "UpdateOmitted"
    ]


def test_an_unsigned_reply_is_disclosed_and_its_complaint_does_not_dispute_the_round(
    world: World, tmp_path: Path
) -> None:
    """A node replies unsigned, the round finalizes, then the node complains with a separately signed
    update and its ticket: the manifest discloses its reply (unsigned entry, with the reason), every
    validator judges the complaint unfounded ("disclosed"), nobody disputes and the round stays finalized;
    the audit agrees and the node's own inclusion check does not complain. Before: the manifest had no
    entry for it, the complaint was "omitted" and a quorum of validators disputed the finalized round."""
    attacker, stranger_signed, hostile = world.nodes[2], world.nodes[3], world.nodes[4]
    built = world.round(
        1, unsigned=(attacker.address,), other_key=(stranger_signed.address,), infinite=(hostile.address,)
    )
    manifest = built.manifest
    entry = manifest.entry_of(attacker.address)
    assert entry is not None and entry.unsigned and not entry.included and entry.score == EXCLUDED_SCORE
    assert (
        entry.claimed == 0 and "unsigned update" in entry.reason and entry.update == reason_hash(entry.reason)
    )
    other = manifest.entry_of(stranger_signed.address)  # signed, but by another key: disclosed unsigned too
    assert other is not None and other.unsigned and "signed by" in other.reason
    refused = manifest.entry_of(hostile.address)  # refused numbers, no claim: disclosed with the reason
    assert refused is not None and refused.unsigned and "num-examples" in refused.reason, refused
    assert [e.node for e in manifest.included] == sorted((n.address for n in world.nodes[:2]), key=str.lower)
    assert ledger.updates_root(world.client, world.task, 1) == manifest.root()
    world.finalize(1)  # the validators re-derive a round with unsigned entries

    signed = world.separate_update(1, attacker)
    update_claims.complain_omitted(world.client, attacker, signed, world.ticket(1, attacker))
    [event] = _complaints(world, tmp_path)
    assert [v.handle(event) for v in world.validators] == [None, None, None]
    assert quorum.dispute_count(world.client, world.task, 1) == 0
    assert quorum.is_finalized(world.client, world.task, 1)
    verdict, disclosed = judge_complaint(
        world.client, manifest, world.task, 1, attacker.address, signed.update_hash
    )
    assert verdict == "disclosed" and disclosed == entry
    [finding] = [f for f in audit_task(world.client, world.task) if f.check == "complaint"]
    assert finding.ok and "unfounded" in finding.detail and attacker.address in finding.detail
    inclusion = check_inclusion(world.client, attacker, signed, world.ticket(1, attacker))
    assert inclusion.status == "excluded" and not inclusion.tx and "unsigned update" in inclusion.detail


def test_the_root_binds_the_disclosure_of_an_unsigned_reply(world: World) -> None:
    """A manifest without the unsigned entry, or with its reason changed, has another root: the chain's
    root no longer matches; an unsigned entry that claims a weight, a score or another update hash is
    refused by the parser. Before: an unsigned reply had no entry at all, so nothing bound it."""
    attacker = world.nodes[1]
    built = world.round(1, unsigned=(attacker.address,))
    manifest = built.manifest
    committed = ledger.updates_root(world.client, world.task, 1)
    entry = manifest.entry_of(attacker.address)
    assert committed == manifest.root() and parse_manifest(manifest.to_json(), "m").root() == committed

    dropped = replace(manifest, entries=tuple(e for e in manifest.entries if not e.unsigned))
    reworded = replace(
        manifest,
        entries=tuple(
            replace(e, reason="late", update=reason_hash("late")) if e.unsigned else e
            for e in manifest.entries
        ),
    )
    assert dropped.root() != committed and reworded.root() != committed
    assert parse_manifest(reworded.to_json(), "m").entry_of(attacker.address).reason == "late"

    index = list(manifest.entries).index(entry)
    for change in ({"score": 500_000}, {"reason": 7}, {"clip": 0.5}, {"claimed": 100}):  # never unsigned
        data = json.loads(manifest.to_json())
        data["entries"][index].update(change)
        with pytest.raises(FlchainError, match=rf"m: entries\[{index}\]") as refused:
            parse_manifest(json.dumps(data).encode(), "m")
        assert "\n" not in str(refused.value), change
    # Any other unsigned entry stands for a claim its node posted on-chain: this node posted none, so a
    # validator finds the difference (reason changed with the leaf kept, another update hash).
    for change in (
        {"reason": "late"},
        {"update": "0x" + "00" * 32},
        {"update": "0x" + "00" * 32, "claimed": 9},
    ):
        data = json.loads(manifest.to_json())
        data["entries"][index].update(change)
        tampered = parse_manifest(json.dumps(data).encode(), "m")
        found = round_check._against_chain(world.client, tampered, world.task, 1, {})
        assert any("posted no such claim on-chain" in d.what for d in found), (change, found)
    check = check_round(world.client, world.task, 1)  # the published manifest re-derives as committed
    assert check.ok, check.differences


def test_complaints_and_disputes_of_a_finalized_round_end_at_the_deadline(
    world: World, tmp_path: Path
) -> None:
    """Before the deadline a finalized round can be disputed (a lone validator's dispute is recorded) and
    a node may complain; after it (evm_increaseTime + evm_mine) complainOmitted reverts
    ComplaintWindowClosed, disputing the finalized round reverts FinalityStands, a validator ignores a
    complaint it judges then, and the round stays finalized; an unfinalized round can still be disputed.
    Before: no deadline existed, complaints and disputes of a finalized round were accepted forever."""
    client, task = world.client, world.task
    world.round(1)
    world.finalize(1)
    record = ledger.get_round(client, task, 1)
    assert update_claims.complaint_window(client) == WINDOW
    assert update_claims.complaint_deadline(client, task, 1) == record.timestamp + WINDOW
    with pytest.raises(FlchainError, match="UnknownRound"):
        update_claims.complaint_deadline(client, task, 9)
    for bad in (-1, 2**33, 1.5, True):
        with pytest.raises(
            FlchainError, match=r"complaint window .* is not a whole number of seconds"
        ) as err:
            bootstrap.deploy_local(world.chain.process, complaint_window=bad)
        assert "\n" not in str(err.value)
    v1, v2, v3 = world.validators
    receipt = quorum.dispute(client, v1.account, task, 1, bytes(32), "a dispute in time")
    assert receipt["status"] == 1 and quorum.dispute_count(client, task, 1) == 1
    early = world.separate_update(1, world.nodes[0])
    update_claims.complain_omitted(client, world.nodes[0], early, world.ticket(1, world.nodes[0]))
    world.round(2)  # committed, never attested

    world.pass_deadline(1)
    late = world.nodes[1]
    with pytest.raises(FlchainError, match=rf"ComplaintWindowClosed\(task={task}, round=1"):
        update_claims.complain_omitted(client, late, world.separate_update(1, late), world.ticket(1, late))
    with pytest.raises(FlchainError, match=rf"FinalityStands\(task={task}, round=1"):
        quorum.dispute(client, v2.account, task, 1, bytes(32), "too late")
    # The complaint filed in time is handled after the deadline, and so is a founded one (a node neither
    # disclosed nor missed): the round's finality stands, the validator sends nothing.
    [event] = _complaints(world, tmp_path)
    assert v3.handle(event) is None
    founded = Account.create().address
    manifest = check_round(client, task, 1).manifest
    assert judge_complaint(client, manifest, task, 1, founded, early.update_hash)[0] == "omitted"
    assert v3.judge_complaint(task, 1, founded, early.update_hash) is None
    assert not quorum.has_disputed(client, task, 1, v3.account.address)
    assert quorum.is_finalized(client, task, 1) and quorum.finality_stands(client, task, 1)
    quorum.dispute(client, v2.account, task, 2, bytes(32), "an unfinalized round stays disputable")
    assert quorum.dispute_count(client, task, 2) == 1 and not quorum.finality_stands(client, task, 2)
    assert check_inclusion(
        client, late, world.separate_update(1, late), world.ticket(1, late)
    ).detail.endswith(f"closed at {record.timestamp + WINDOW}")


def test_chain_deploy_sets_the_complaint_window(
    anvil_process: ChainProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flchain chain deploy --complaint-window 600` deploys a ledger whose window is 600 s; a negative
    window is refused before anything is sent. Before: the option did not exist and complaints had no
    deadline."""
    from fl_chain.chain.client import open_chain
    from fl_chain.chain.identity import write_keystore
    from fl_chain.cli import run

    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", "pw")
    key = tmp_path / "admin.json"
    admin = write_keystore(key, "pw")
    funder = bootstrap.deploy_local(anvil_process)
    funder.client.fund(funder.admin, admin, 10**18)
    args = ["chain", "deploy", "--rpc", anvil_process.rpc_url, "--key", str(key), "--home", str(tmp_path)]
    assert run([*args, "--complaint-window", "-1"]) != 0
    assert not (tmp_path / "deployment.json").exists()
    assert run([*args, "--complaint-window", "600"]) == 0
    assert update_claims.complaint_window(open_chain(tmp_path / "deployment.json")) == 600


def test_a_simulated_federation_discloses_an_unsigned_node_and_its_complaint_disputes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack end to end on the Simulation Engine: a verified demo (3 nodes) where node 0's app sends
    its update without its signed claim. The round commits with the node disclosed as answered (its
    unsigned entry); two validators re-derive it from the store and finalize it (quorum 2); the node then
    complains on-chain with a separately signed update and the ticket it was sent; every validator judges
    the complaint unfounded, nobody disputes, the round stays finalized and the audit agrees. Before: the
    manifest named only signed claims, the complaint was "omitted" and validators disputed the finalized
    round."""
    from fl_chain.demo import run_demo

    registered: list[LocalAccount] = []  # the demo's node keys, as it registers them
    register = bootstrap.register_nodes

    def keep(*args, **kwargs) -> list[LocalAccount]:
        registered.extend(register(*args, **kwargs))
        return registered

    monkeypatch.setattr(bootstrap, "register_nodes", keep)
    config = verified_demo_config(1)
    config.federation.min_nodes = 3  # the round waits for all three, however slowly they join
    home = tmp_path / "demo"
    home.mkdir()
    local = bootstrap.start_local(home, "anvil")
    try:
        result = run_demo(config, 3, home, plot=False, local=local, attacks={0: {"kind": "unsigned"}})
        client, task, attacker = local.client, result.task, registered[0]
        assert result.chain_rounds == 2, result.chain_rounds
        assert set(result.reports[-1].participants) == {n.address for n in registered[1:]}
        client.transact(local.admin, quorum.quorum_contract(client).functions.setQuorum(2))
        validators = [
            Validator(client, account, lambda rnd, arrays: 0.5, task=task)
            for account in bootstrap.new_validators(client, 3)
        ]
        done = [v.attest(task, 1) for v in validators[:2]]  # each re-derives the round from the store
        assert all(isinstance(d, Attestation) for d in done), done
        assert quorum.is_finalized(client, task, 1)
        manifest = check_round(client, task, 1).manifest
        entry = manifest.entry_of(attacker.address)
        assert entry is not None and entry.unsigned and "unsigned update" in entry.reason, entry
        context = RoundContext(client.deployment.chain_id, client.ledger.address, task, 1)
        signed = sign_update(attacker, *vars(context).values(), keccak(text="signed afterwards"), 100)
        ticket = sign_ticket(local.coordinator, *vars(context).values(), attacker.address)
        update_claims.complain_omitted(client, attacker, signed, ticket)
        [event] = [
            e for e in ChainWatcher(client, tmp_path / "cursor.json").poll() if e.name == "UpdateOmitted"
        ]
        assert [v.handle(event) for v in validators] == [None, None, None]
        assert quorum.dispute_count(client, task, 1) == 0 and quorum.is_finalized(client, task, 1)
        [finding] = [f for f in audit_task(client, task) if f.check == "complaint"]
        assert finding.ok and "unfounded" in finding.detail, finding
    finally:
        local.stop()
