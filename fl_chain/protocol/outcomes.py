"""Commitment mode's public documents: a round's outcome leaves and a reputation checkpoint's leaves.

A commitment-mode round commits only the Merkle root of its outcomes (ModelLedger.commitOutcomes): one
leaf (node, score, outcome) per scored, missed or penalized node, in OpenZeppelin's StandardMerkleTree
encoding of OUTCOME_TYPES. The leaves are published as JSON beside the model, named by that root
(`rounds/t<task>-r<round>-<root>.json`, like a verified round's manifest), so anyone can fetch them by
what the chain holds and rebuild the root. A checkpoint (ReputationCheckpoints.propose) is the same for
the folded reputations: one leaf (node, reputation, active) per node seen so far, CHECKPOINT_TYPES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from eth_utils import keccak, to_checksum_address

from fl_chain.errors import FlchainError
from fl_chain.protocol import fields
from fl_chain.protocol.documents import canonical_json, document_name, load_document
from fl_chain.protocol.fixedpoint import SCALE
from fl_chain.protocol.merkle import StandardTree

OUTCOME_TYPES = ("address", "uint256", "uint8")
CHECKPOINT_TYPES = ("address", "uint256", "bool")
SCORED, MISSED, PENALIZED = 0, 1, 2
OUTCOME_NAMES = {SCORED: "scored", MISSED: "missed", PENALIZED: "penalized"}
EMPTY_OUTCOMES_ROOT = keccak(text="flchain.outcomes.none.v1")  # a round without scored, missed or penalized
OUTCOMES_VERSION = 1
CHECKPOINT_VERSION = 1
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """One node's outcome in a round: scored (with its score), missed or penalized (score 0)."""

    node: str
    score: int
    kind: int

    def row(self) -> tuple[str, int, int]:
        """The leaf's ABI values (OUTCOME_TYPES)."""
        return (to_checksum_address(self.node), self.score, self.kind)


@dataclass(frozen=True)
class RoundOutcomes:
    """A commitment-mode round's outcome leaves and the context they belong to. Outcomes are in
    canonical order: by kind, then node address (lowercase)."""

    chain_id: int
    ledger: str
    task: int
    round: int
    parent: str  # 0x hash of the previous model
    model: str  # 0x hash of the committed model
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)
    version: int = OUTCOMES_VERSION

    @classmethod
    def of(
        cls,
        context: tuple[int, str, int, int],
        parent: bytes,
        model: bytes,
        scores: dict[str, int],
        missed: list[str],
        penalized: list[str],
    ) -> RoundOutcomes:
        """The outcomes of one round from what the coordinator decided."""
        rows = [Outcome(to_checksum_address(n), int(s), SCORED) for n, s in scores.items()]
        rows += [Outcome(to_checksum_address(n), 0, MISSED) for n in missed]
        rows += [Outcome(to_checksum_address(n), 0, PENALIZED) for n in penalized]
        if len({o.node for o in rows}) != len(rows):  # a leaf per node: parse_outcomes refuses repeats
            raise FlchainError(
                f"round {context[3]}: a node is listed twice among scored, missed and penalized"
            )
        chain_id, ledger, task, round_number = context
        return cls(
            chain_id,
            to_checksum_address(ledger),
            task,
            round_number,
            "0x" + parent.hex(),
            "0x" + model.hex(),
            tuple(sorted(rows, key=lambda o: (o.kind, o.node.lower()))),
        )

    def of_kind(self, kind: int) -> list[Outcome]:
        """The outcomes of one kind, in canonical order."""
        return [o for o in self.outcomes if o.kind == kind]

    def tree(self) -> StandardTree | None:
        """The Merkle tree of the leaves (None without outcomes); built once (about 1 s per 10,000 leaves)."""
        return self._tree

    @cached_property
    def _tree(self) -> StandardTree | None:
        return StandardTree.of(OUTCOME_TYPES, [o.row() for o in self.outcomes]) if self.outcomes else None

    def root(self) -> bytes:
        """The outcomes root committed on-chain."""
        tree = self.tree()
        return tree.root if tree is not None else EMPTY_OUTCOMES_ROOT

    def name(self) -> str:
        """The file name it is published under (in the store's `rounds/`)."""
        return document_name(self.task, self.round, self.root())

    def to_json(self) -> bytes:
        """Canonical JSON bytes (outcomes as [node, score, kind] rows: 1,000 leaves are ~70 kB)."""
        data = {
            "version": self.version,
            "kind": "outcomes",
            "chain_id": self.chain_id,
            "ledger": self.ledger,
            "task": self.task,
            "round": self.round,
            "parent": self.parent,
            "model": self.model,
            "outcomes": [[o.node, o.score, o.kind] for o in self.outcomes],
        }
        return canonical_json(data)


@dataclass(frozen=True)
class CheckpointLeaves:
    """A reputation checkpoint: every node's folded reputation and status after `through_round`."""

    chain_id: int
    ledger: str
    task: int
    through_round: int
    params: tuple[int, int, int, int, int]  # the Reputation parameters it was folded with
    leaves: tuple[tuple[str, int, bool], ...] = field(default_factory=tuple)  # (node, reputation, active)
    version: int = CHECKPOINT_VERSION

    def tree(self) -> StandardTree:
        """The Merkle tree of the leaves (a checkpoint has at least one); built once, however many
        proofs are taken from it."""
        return self._tree

    @cached_property
    def _tree(self) -> StandardTree:
        return StandardTree.of(CHECKPOINT_TYPES, [(to_checksum_address(n), v, a) for n, v, a in self.leaves])

    def root(self) -> bytes:
        """The root proposed on-chain."""
        return self.tree().root

    def name(self) -> str:
        """The file name it is published under (in the store's `rounds/`)."""
        return document_name(self.task, self.through_round, self.root())

    def leaf_of(self, node: str) -> tuple[str, int, bool] | None:
        """A node's leaf, if it has one."""
        return next((leaf for leaf in self.leaves if leaf[0].lower() == node.lower()), None)

    def proof_of(self, node: str) -> tuple[tuple[str, int, bool], list[bytes]]:
        """A node's leaf and its proof; a one-line error if the checkpoint has no leaf for it."""
        leaf = self.leaf_of(node)
        if leaf is None:
            raise FlchainError(
                f"checkpoint of task {self.task} through round {self.through_round} has no {node}"
            )
        return leaf, self.tree().proof((to_checksum_address(leaf[0]), leaf[1], leaf[2]))

    def to_json(self) -> bytes:
        """Canonical JSON bytes."""
        data = {
            "version": self.version,
            "kind": "checkpoint",
            "chain_id": self.chain_id,
            "ledger": self.ledger,
            "task": self.task,
            "through_round": self.through_round,
            "params": list(self.params),
            "leaves": [list(leaf) for leaf in self.leaves],
        }
        return canonical_json(data)


def _header(blob: bytes, where: str, kind: str, version: int, round_key: str) -> dict:
    """The document's JSON with its context fields checked (and the ledger checksummed)."""
    data = load_document(blob, where, f"{kind} document", version, kind)
    for key in ("chain_id", "task", round_key):
        fields.uint(data.get(key), f"{where}: {key}")
    data["ledger"] = to_checksum_address(fields.address(data.get("ledger"), f"{where}: ledger"))
    return data


def _rows(data: dict, key: str, where: str, check: Callable[[list, str], T]) -> list[T]:
    """The [address, value, flag] rows under `key`, each turned into what `check` makes of it; a node
    may appear once."""
    rows = fields.array(data.get(key), f"{where}: {key}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 3 or not fields.is_address(row[0]):
            raise FlchainError(f"{where}: {key}[{i}] is not [address, value, flag]")
        out.append(check(row, f"{where}: {key}[{i}]"))
    if len({row[0].lower() for row in rows}) != len(rows):
        raise FlchainError(f"{where}: {key} names a node twice")
    return out


def _outcome(row: list, at: str) -> Outcome:
    node, score, kind = row
    if not fields.is_uint(kind, PENALIZED):  # not `in OUTCOME_NAMES`: 1.0 == 1, and a list is unhashable
        raise FlchainError(f"{at}: outcome kind {kind!r} (expected 0 scored, 1 missed or 2 penalized)")
    if not fields.is_uint(score, SCALE if kind == SCORED else 0):
        raise FlchainError(f"{at}: score {score!r} (expected 0..{SCALE} for a scored node, 0 otherwise)")
    return Outcome(to_checksum_address(node), score, kind)


def _checkpoint_leaf(row: list, at: str) -> tuple[str, int, bool]:
    node, value, active = row
    if not fields.is_uint(value, SCALE):
        raise FlchainError(f"{at}: reputation {value!r} (expected 0..{SCALE})")
    if not isinstance(active, bool):
        raise FlchainError(f"{at}: active {active!r} (expected true or false)")
    return (to_checksum_address(node), value, active)


def parse_outcomes(blob: bytes, where: str) -> RoundOutcomes:
    """A round's outcomes from JSON bytes; a one-line error naming `where` and the field otherwise."""
    data = _header(blob, where, "outcomes", OUTCOMES_VERSION, "round")
    for key in ("parent", "model"):
        fields.hash_text(data.get(key), f"{where}: {key}")
    rows = _rows(data, "outcomes", where, _outcome)
    if rows != sorted(rows, key=lambda o: (o.kind, o.node.lower())):
        raise FlchainError(f"{where}: outcomes are not in canonical order (by kind, then node address)")
    return RoundOutcomes(
        data["chain_id"],
        data["ledger"],
        data["task"],
        data["round"],
        data["parent"],
        data["model"],
        tuple(rows),
    )


def parse_checkpoint(blob: bytes, where: str) -> CheckpointLeaves:
    """A checkpoint from JSON bytes; a one-line error naming `where` and the field otherwise."""
    data = _header(blob, where, "checkpoint", CHECKPOINT_VERSION, "through_round")
    params = data.get("params")
    if not isinstance(params, list) or len(params) != 5 or not all(fields.is_uint(p) for p in params):
        raise FlchainError(f"{where}: params is not a list of five non-negative integers")
    leaves = _rows(data, "leaves", where, _checkpoint_leaf)
    if not leaves:
        raise FlchainError(f"{where}: a checkpoint has at least one leaf")
    return CheckpointLeaves(
        data["chain_id"],
        data["ledger"],
        data["task"],
        data["through_round"],
        tuple(params),
        tuple(leaves),
    )
