"""Merkle trees as OpenZeppelin's StandardMerkleTree builds them, so a root made here is the root
`@openzeppelin/merkle-tree` makes from the same values and a proof made here passes Solidity's
`MerkleProof.verify`.

Written by hand because no maintained Python package reproduces that layout: a leaf is
keccak256(keccak256(abi.encode(values))) (double hashing: a leaf can never pass for an inner node), a
parent is keccak256 of its two children in ascending order, leaves are sorted by hash and laid out
from the end of one array (node i has children 2i+1 and 2i+2; the root is node 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import keccak

from fl_chain.errors import FlchainError


def leaf_hash(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """The standard leaf of ABI-encoded `values`: keccak256(keccak256(abi.encode(values)))."""
    return keccak(keccak(encode(list(types), list(values))))


def node_hash(a: bytes, b: bytes) -> bytes:
    """A parent: keccak256 of its children in ascending byte order (commutative, as MerkleProof expects)."""
    return keccak(b"".join(sorted((a, b))))


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `leaf` and `proof` lead to (MerkleProof.processProof)."""
    node = leaf
    for sibling in proof:
        node = node_hash(node, sibling)
    return node


@dataclass(frozen=True)
class StandardTree:
    """A tree over rows of ABI values of the given types (OpenZeppelin StandardMerkleTree layout)."""

    types: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    nodes: tuple[bytes, ...]  # the array layout; nodes[0] is the root
    position: dict[bytes, int]  # leaf hash -> index in `nodes`

    @classmethod
    def of(cls, types: Sequence[str], rows: Sequence[Sequence[Any]]) -> StandardTree:
        """Build the tree; a one-line error for no rows or a repeated row (its proof would be ambiguous)."""
        if not rows:
            raise FlchainError("a Merkle tree needs at least one leaf")
        leaves = sorted(leaf_hash(types, row) for row in rows)
        if len(set(leaves)) != len(leaves):
            raise FlchainError("a Merkle tree's leaves must differ (a row appears twice)")
        nodes: list[bytes] = [b""] * (2 * len(leaves) - 1)
        for i, leaf in enumerate(leaves):
            nodes[len(nodes) - 1 - i] = leaf
        for i in range(len(nodes) - 1 - len(leaves), -1, -1):
            nodes[i] = node_hash(nodes[2 * i + 1], nodes[2 * i + 2])
        position = {nodes[len(nodes) - 1 - i]: len(nodes) - 1 - i for i in range(len(leaves))}
        return cls(tuple(types), tuple(tuple(r) for r in rows), tuple(nodes), position)

    @property
    def root(self) -> bytes:
        """The root (what goes on-chain)."""
        return self.nodes[0]

    def proof(self, row: Sequence[Any]) -> list[bytes]:
        """The sibling hashes from `row`'s leaf up to the root; a one-line error if it is not a leaf."""
        index = self.position.get(leaf_hash(self.types, row))
        if index is None:
            raise FlchainError(f"{tuple(row)!r} is not a leaf of this tree")
        proof = []
        while index > 0:
            sibling = index - 1 if index % 2 == 0 else index + 1
            proof.append(self.nodes[sibling])
            index = (index - 1) // 2
        return proof

    def verify(self, row: Sequence[Any], proof: Sequence[bytes]) -> bool:
        """True if `proof` proves `row` against this tree's root."""
        return process_proof(leaf_hash(self.types, row), proof) == self.root
