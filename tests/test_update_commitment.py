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
from fl_chain.fl.update_signing import LEAF_TYPES, SignedUpdate, UpdateLeaf, sign_update
from fl_chain.merkle import StandardTree, process_proof

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
