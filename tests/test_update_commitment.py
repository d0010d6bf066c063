"""The pieces of a verified round's commitment: OpenZeppelin-compatible Merkle trees (checked against
OpenZeppelin's own `@openzeppelin/merkle-tree`, run by Node.js from node_modules) and node signatures on
updates (recovered to the signer; any other field, chain or ledger gives another signer)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_chain.errors import FlchainError
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.protocol.merkle import StandardTree, process_proof
from fl_chain.protocol.update_signing import LEAF_TYPES, SignedUpdate, UpdateLeaf, sign_update

ROOT = Path(__file__).resolve().parents[1]
OZ_TREE = """
const { StandardMerkleTree } = require(process.argv[1] + "/node_modules/@openzeppelin/merkle-tree");
const rows = JSON.parse(process.argv[2]);
const tree = StandardMerkleTree.of(rows, JSON.parse(process.argv[3]));
console.log(JSON.stringify({ root: tree.root, proofs: rows.map((r) => tree.getProof(r)) }));
"""


def _leaves(count: int, seed: int) -> list[UpdateLeaf]:
    import random

    rng = random.Random(seed)
    return [
        UpdateLeaf(
            Account.create().address, rng.randbytes(32), rng.randrange(1, 10**6), rng.randrange(10**6 + 1)
        )
        for _ in range(count)
    ]


def _openzeppelin(rows: list[tuple]) -> dict:
    as_json = [[r[0], "0x" + r[1].hex(), str(r[2]), str(r[3])] for r in rows]
    done = subprocess.run(
        ["node", "-e", OZ_TREE, str(ROOT), json.dumps(as_json), json.dumps(LEAF_TYPES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_roots_and_proofs_equal_openzeppelins(count: int) -> None:
    rows = [leaf.row() for leaf in _leaves(count, count)]
    tree = StandardTree.of(LEAF_TYPES, rows)
    reference = _openzeppelin(rows)
    assert "0x" + tree.root.hex() == reference["root"]
    for row, proof in zip(rows, reference["proofs"], strict=True):
        assert ["0x" + p.hex() for p in tree.proof(row)] == proof
        assert tree.verify(row, tree.proof(row))


def test_a_changed_leaf_or_proof_does_not_verify() -> None:
    leaves = _leaves(5, 1)
    tree = StandardTree.of(LEAF_TYPES, [leaf.row() for leaf in leaves])
    honest = leaves[2].row()
    proof = tree.proof(honest)
    reweighted = (honest[0], honest[1], honest[2] + 1, honest[3])
    assert not tree.verify(reweighted, proof)
    assert not tree.verify(honest, [proof[0][::-1], *proof[1:]])
    with pytest.raises(FlchainError, match="not a leaf"):
        tree.proof(reweighted)
    with pytest.raises(FlchainError, match="appears twice"):
        StandardTree.of(LEAF_TYPES, [honest, honest])
    with pytest.raises(FlchainError, match="at least one"):
        StandardTree.of(LEAF_TYPES, [])
    assert process_proof(tree.nodes[-1], []) == tree.nodes[-1]


LEDGER = "0x" + "42" * 20


@settings(max_examples=25, deadline=None)
@given(
    task=st.integers(0, 2**64),
    round_number=st.integers(0, 2**32),
    update_hash=st.binary(min_size=32, max_size=32),
    weight=st.integers(0, 2**64),
)
def test_an_update_signature_recovers_to_its_signer_and_binds_every_field(
    task: int, round_number: int, update_hash: bytes, weight: int
) -> None:
    node = Account.create()
    signed = sign_update(node, 31337, LEDGER, task, round_number, update_hash, weight)
    assert signed.signer() == node.address
    for changed in (
        {"chain_id": 1},
        {"ledger": "0x" + "43" * 20},
        {"task": task + 1},
        {"round": round_number + 1},
        {"update_hash": bytes(32) if update_hash != bytes(32) else b"\x01" * 32},
        {"weight": weight + 1},
    ):
        other = SignedUpdate(**{**signed.__dict__, **changed})
        assert other.signer() != node.address, changed


def test_a_malformed_update_signature_is_a_one_line_error() -> None:
    signed = sign_update(Account.create(), 31337, LEDGER, 1, 2, b"\x07" * 32, 10)
    for bad in ("0x", "0x" + "00" * 65, signed.signature[:-2], "not hex"):
        with pytest.raises(FlchainError, match="malformed update signature"):
            SignedUpdate(**{**signed.__dict__, "signature": bad}).signer()
    with pytest.raises(FlchainError, match="32 bytes"):
        sign_update(Account.create(), 31337, LEDGER, 1, 2, b"\x07" * 31, 10)


def test_a_verified_round_commits_its_updates_root_and_hears_a_left_out_node(chain) -> None:
    """On a real chain: the ledger's digest is the one nodes sign; the root committed with a verified
    round proves each leaf (and no altered one); a node left out posts its signed update as a
    complaint, once, and only with its own signature; a plain round and an empty root are refused."""
    from fl_chain.chain import ledger, update_claims
    from fl_chain.chain.setup import bootstrap
    from fl_chain.protocol.update_signing import sign_ticket, ticket_digest, update_digest

    client = chain.client
    nodes = bootstrap.register_nodes(client, 4)
    task = ledger.create_task(
        client, chain.coordinator, b"\x01" * 32, "file:///s/", LedgerMode.VERIFIED, b"\x0e" * 32
    )
    ledger.commit_round(client, chain.coordinator, task, 0, b"\x10" * 32, "", ledger.ZERO_HASH, {})
    chain_id, address = client.deployment.chain_id, client.ledger.address
    signed = [
        sign_update(n, chain_id, address, task, 1, bytes([i + 1]) * 32, 100 + i) for i, n in enumerate(nodes)
    ]
    assert bytes(
        client.call(client.ledger.functions.updateDigest(task, 1, b"\x01" * 32, 100))
    ) == update_digest(chain_id, address, task, 1, b"\x01" * 32, 100)
    included = [
        UpdateLeaf(s.signer(), s.update_hash, s.weight, 500_000) for s in signed[:3]
    ]  # node 3 left out
    tree = StandardTree.of(LEAF_TYPES, [leaf.row() for leaf in included])
    scores = {leaf.node: leaf.score for leaf in included}
    with pytest.raises(FlchainError, match="EmptyUpdatesRoot"):
        ledger.commit_round(
            client, chain.coordinator, task, 1, b"\x11" * 32, "", b"\x10" * 32, scores, updates_root=bytes(32)
        )
    ledger.commit_round(
        client, chain.coordinator, task, 1, b"\x11" * 32, "", b"\x10" * 32, scores, updates_root=tree.root
    )
    assert ledger.updates_root(client, task, 1) == tree.root and ledger.updates_root(client, task, 0) is None
    for leaf in included:
        assert update_claims.is_committed_update(client, task, 1, leaf, tree.proof(leaf.row()))
    reweighted = UpdateLeaf(
        included[0].node, included[0].update_hash, included[0].weight * 2, included[0].score
    )
    assert not update_claims.is_committed_update(client, task, 1, reweighted, tree.proof(included[0].row()))

    left_out = nodes[3]
    ticket = sign_ticket(chain.coordinator, chain_id, address, task, 1, left_out.address)
    assert bytes(
        client.call(client.ledger.functions.ticketDigest(task, 1, left_out.address))
    ) == ticket_digest(chain_id, address, task, 1, left_out.address)
    with pytest.raises(FlchainError, match="NotSigner"):
        update_claims.complain_omitted(client, nodes[0], signed[3], ticket)  # someone else's signature
    for forged in (
        sign_ticket(left_out, chain_id, address, task, 1, left_out.address),  # not the task owner's
        sign_ticket(chain.coordinator, chain_id, address, task, 1, nodes[0].address),  # another node's
        sign_ticket(chain.coordinator, chain_id, address, task, 2, left_out.address),  # another round's
    ):
        with pytest.raises(FlchainError, match="NotSampled"):
            update_claims.complain_omitted(client, left_out, signed[3], forged)
    receipt = update_claims.complain_omitted(client, left_out, signed[3], ticket)
    (event,) = client.ledger.events.UpdateOmitted().process_receipt(receipt)
    assert event["args"]["node"] == left_out.address and event["args"]["updateHash"] == signed[3].update_hash
    with pytest.raises(FlchainError, match="AlreadyComplained"):
        update_claims.complain_omitted(client, left_out, signed[3], ticket)
    plain = sign_update(left_out, chain_id, address, task, 0, b"\x05" * 32, 1)
    plain_ticket = sign_ticket(chain.coordinator, chain_id, address, task, 0, left_out.address)
    with pytest.raises(FlchainError, match="NotVerified"):
        update_claims.complain_omitted(client, left_out, plain, plain_ticket)
    outsider = Account.create()
    client.fund(chain.admin, outsider.address, 10**17)
    with pytest.raises(FlchainError, match="NotEligible"):
        update_claims.complain_omitted(
            client,
            outsider,
            sign_update(outsider, chain_id, address, task, 1, b"\x06" * 32, 1),
            sign_ticket(chain.coordinator, chain_id, address, task, 1, outsider.address),
        )
    # Visible to every reader: the watcher's events and `flchain audit`.
    from fl_chain.chain.watcher import ChainWatcher
    from fl_chain.verify.audit import audit_task

    names = [e.name for e in ChainWatcher(client).poll()]
    assert names.count("UpdatesCommitted") == 1 and names.count("UpdateOmitted") == 1
    omitted = [f for f in audit_task(client, task) if f.check == "complaint"]
    assert len(omitted) == 1 and left_out.address in omitted[0].detail and not omitted[0].ok


def test_screening_checks_each_replys_signed_update() -> None:
    """Pure screening with real signatures: a reply's claim must be for the update it carries, its weight,
    this round, and signed by its sender; a false claim is dropped and penalized; an unsigned reply
    passes unless the round requires signatures (then it is dropped, not penalized)."""
    import numpy as np
    from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

    from fl_chain.coordinator.screening import ScreeningPolicy, screen_replies
    from fl_chain.protocol.model_bytes import hash_arrays
    from fl_chain.protocol.update_signing import RoundContext
    from fl_chain.wire.records import UPDATE_RECORD, arrays_to_record
    from tests.conftest import flower_server_identity

    previous = {"w": np.zeros(4, np.float32)}
    context = RoundContext(31337, LEDGER, 3, 7)
    keys = {n: Account.create() for n in range(1, 9)}
    verified = {n: k.address for n, k in keys.items()}
    with flower_server_identity(1):  # Flower stamps messages with the ServerApp's identity
        outgoing = {
            n: Message(RecordDict({"c": ConfigRecord({})}), dst_node_id=n, message_type="train") for n in keys
        }

    def reply(
        n: int, signer=None, weight: int = 5, claimed: float = 5, rnd: int = 7, other=False, claim=None
    ):
        arrays = {"w": np.full(4, n, np.float32)}
        content = RecordDict(
            {"arrays": arrays_to_record(arrays), "metrics": MetricRecord({"num-examples": claimed})}
        )
        if claim is not None:
            content[UPDATE_RECORD] = ConfigRecord(claim)
        elif signer is not None:
            signed_hash = hash_arrays({"w": np.full(4, -1, np.float32)}) if other else hash_arrays(arrays)
            signed = sign_update(signer, 31337, LEDGER, 3, rnd, signed_hash, weight)
            content[UPDATE_RECORD] = ConfigRecord(
                {"hash": "0x" + signed_hash.hex(), "weight": weight, "signature": signed.signature}
            )
        return Message(content, reply_to=outgoing[n])

    replies = [
        reply(1, keys[1]),  # honest
        reply(2, keys[1]),  # node 1's signature on node 2's reply
        reply(3, keys[3], other=True),  # signed another update
        reply(4, keys[4], weight=5, claimed=50),  # claims more weight than it signed
        reply(5, keys[5], rnd=6),  # a signature from another round
        reply(6),  # unsigned
        reply(7, claim={"hash": "0x12", "weight": 5, "signature": "0x12"}),  # garbage
        reply(8, keys[8], weight=7, claimed=7.5),  # a fractional claim signs as its integer part
    ]
    out = screen_replies(replies, verified, previous, ScreeningPolicy(claim_cap=0), context)
    assert sorted(out.signed) == sorted([verified[1], verified[8]])
    assert {r.metadata.src_node_id for r in out.accepted} == {1, 6, 8}
    assert "signed by" in out.dropped[verified[2]]
    assert "not the hash of the update sent" in out.dropped[verified[3]]
    assert "signed weight 5 is not the claimed 50" in out.dropped[verified[4]]
    assert "or for another round" in out.dropped[verified[5]]
    assert "hash is not 0x + 64 hex digits" in out.dropped[verified[7]]
    assert out.penalized == {verified[n] for n in (2, 3, 4, 5, 7)}
    strict = screen_replies(
        replies, verified, previous, ScreeningPolicy(claim_cap=0, require_signed=True), context
    )
    assert "unsigned update" in strict.dropped[verified[6]] and verified[6] not in strict.penalized

    # The same screening with replies checked and hashed as they arrived (coordinator/early_checks.py),
    # every other one through the grid, the rest in line: the same outcome, reply by reply.
    from fl_chain.coordinator.early_checks import EarlyChecks
    from fl_chain.coordinator.screening import check_reply

    for policy in (ScreeningPolicy(claim_cap=0), ScreeningPolicy(claim_cap=0, require_signed=True)):
        inline = screen_replies(replies, verified, previous, policy, context)
        early = EarlyChecks(previous, policy)
        for arrived in replies[::2]:
            early.submit(arrived)
        ahead = screen_replies(replies, verified, previous, policy, context, early)
        early.close()
        assert [r.metadata.src_node_id for r in ahead.accepted] == [
            r.metadata.src_node_id for r in inline.accepted
        ]
        assert ahead.dropped == inline.dropped and ahead.penalized == inline.penalized
        assert ahead.signed == inline.signed and ahead.weights == inline.weights
        assert early.checked(replies[0]).update_hash == hash_arrays({"w": np.full(4, 1, np.float32)})
        assert early.checked(replies[1]) is None  # not submitted: screened in line
        assert ahead.hash_seconds > 0
    infinite = Message(
        RecordDict(
            {
                "arrays": arrays_to_record({"w": np.array([np.inf, 0, 0, 0], np.float32)}),
                "metrics": MetricRecord({"num-examples": 5}),
            }
        ),
        reply_to=outgoing[1],
    )
    early = EarlyChecks(previous, ScreeningPolicy())
    early.submit(infinite)
    checked = early.checked(infinite)
    assert (
        checked.reason == check_reply(infinite, previous, ScreeningPolicy())[0]
        and "NaN or Inf" in checked.reason
    )
    assert checked.update_hash is None  # an unusable update is not hashed
    early.close()
