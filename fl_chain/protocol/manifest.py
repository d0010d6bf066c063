"""A verified round's manifest: everything anyone needs to re-derive the round, except the update arrays.

The coordinator publishes it (JSON, under `rounds/t<task>-r<round>-<root>.json` of the task's store) and
commits the Merkle root of its leaves on-chain. One leaf per disclosed update, in LEAF_TYPES order
(node, update hash, weight the node signed, score): an included update carries its score (0..SCALE), an
update the coordinator left out carries EXCLUDED_SCORE, so the root binds what was excluded as well as what
was aggregated, and a coordinator cannot later disclose an exclusion it did not commit. Reasons and the
clip and step factors are not in the leaves: the validators re-derive the model from them and a false
one changes the model hash.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field

from eth_utils import is_hex_address, keccak, to_checksum_address

from fl_chain.errors import FlchainError
from fl_chain.protocol.merkle import StandardTree, leaf_hash
from fl_chain.protocol.update_signing import LEAF_TYPES, SignedUpdate

MANIFEST_VERSION = 1
EXCLUDED_SCORE = 2**256 - 1  # the score of a disclosed, excluded update's leaf
EMPTY_ROOT = keccak(text="flchain.updates.none.v1")  # the root of a round with no disclosed update
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

_HASH = re.compile(r"0x[0-9a-f]{64}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")


@dataclass(frozen=True)
class Entry:
    """One disclosed update: the node's signed claim and what the coordinator did with it."""

    node: str
    update: str  # 0x + 64 hex: the update blob's hash (what the node signed)
    claimed: int  # the weight the node signed (its example count)
    signature: str
    score: int = 0  # included: its fixed-point score; excluded: EXCLUDED_SCORE
    clip: float = 1.0  # included: the factor its update was shortened by (<= 1)
    reason: str = ""  # excluded: why

    @property
    def included(self) -> bool:
        """Whether the update went into the aggregate."""
        return self.score != EXCLUDED_SCORE

    @property
    def update_hash(self) -> bytes:
        """The update hash as bytes."""
        return bytes.fromhex(self.update[2:])

    def row(self) -> tuple[str, bytes, int, int]:
        """The leaf's ABI values (LEAF_TYPES)."""
        return (to_checksum_address(self.node), self.update_hash, self.claimed, self.score)

    def leaf(self) -> bytes:
        """The leaf hash (what a dispute names)."""
        return leaf_hash(LEAF_TYPES, self.row())

    def signed(self, chain_id: int, ledger: str, task: int, round_number: int) -> SignedUpdate:
        """The node's signed claim this entry discloses."""
        return SignedUpdate(
            chain_id,
            to_checksum_address(ledger),
            task,
            round_number,
            self.update_hash,
            self.claimed,
            self.signature,
        )


@dataclass(frozen=True)
class RoundManifest:
    """See the module docstring. Entries are in canonical order: by node address (lowercase)."""

    chain_id: int
    ledger: str
    task: int
    round: int
    parent: str  # 0x hash of the previous model
    model: str  # 0x hash of the committed model
    scoring: str  # the scoring method (which scores can be recomputed: fl/derivation.py)
    claim_cap: float
    step: float  # the factor the aggregate's step was shortened by (<= 1)
    entries: tuple[Entry, ...] = field(default_factory=tuple)
    version: int = MANIFEST_VERSION

    @property
    def included(self) -> list[Entry]:
        """Entries aggregated, in canonical order."""
        return [e for e in self.entries if e.included]

    @property
    def excluded(self) -> list[Entry]:
        """Entries disclosed as left out."""
        return [e for e in self.entries if not e.included]

    def tree(self) -> StandardTree | None:
        """The Merkle tree of the leaves (None without entries)."""
        return StandardTree.of(LEAF_TYPES, [e.row() for e in self.entries]) if self.entries else None

    def root(self) -> bytes:
        """The updates root committed on-chain."""
        tree = self.tree()
        return tree.root if tree is not None else EMPTY_ROOT

    def name(self) -> str:
        """The file name it is published under."""
        return manifest_name(self.task, self.round, self.root())

    def entry_of(self, node: str) -> Entry | None:
        """The entry of a node, if disclosed."""
        return next((e for e in self.entries if e.node.lower() == node.lower()), None)

    def to_json(self) -> bytes:
        """Canonical JSON bytes."""
        data = asdict(self)
        data["entries"] = [asdict(e) for e in self.entries]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def manifest_name(task: int, round_number: int, root: bytes) -> str:
    """`t<task>-r<round>-<root hex>.json`."""
    return f"t{task}-r{round_number}-{root.hex()}.json"


def canonical(entries: list[Entry]) -> tuple[Entry, ...]:
    """Entries in canonical order."""
    return tuple(sorted(entries, key=lambda e: e.node.lower()))


def parse_manifest(blob: bytes, where: str) -> RoundManifest:
    """A manifest from its JSON bytes; a one-line error naming `where` and the field otherwise."""
    try:
        data = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlchainError(f"{where}: not a JSON manifest ({exc})") from None
    if not isinstance(data, dict):
        raise FlchainError(f"{where}: expected a JSON object")

    def need(obj: dict, key: str, kind: type | tuple, at: str):
        value = obj.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FlchainError(f"{where}: {at}{key} is missing or not {getattr(kind, '__name__', kind)}")
        return value

    if need(data, "version", int, "") != MANIFEST_VERSION:
        raise FlchainError(f"{where}: manifest version {data['version']} (expected {MANIFEST_VERSION})")
    ledger = need(data, "ledger", str, "")
    if not is_hex_address(ledger):
        raise FlchainError(f"{where}: ledger is not an address")
    for key in ("parent", "model"):
        if not _HASH.fullmatch(need(data, key, str, "")):
            raise FlchainError(f"{where}: {key} is not 0x + 64 lowercase hex digits")
    factors = {k: float(need(data, k, (int, float), "")) for k in ("claim_cap", "step")}
    if not all(math.isfinite(v) for v in factors.values()):
        raise FlchainError(f"{where}: claim_cap and step must be finite")
    raw_entries = need(data, "entries", list, "")
    entries = []
    for i, raw in enumerate(raw_entries):
        at = f"entries[{i}]."
        if not isinstance(raw, dict):
            raise FlchainError(f"{where}: entries[{i}] is not an object")
        node, update = need(raw, "node", str, at), need(raw, "update", str, at)
        if not is_hex_address(node):
            raise FlchainError(f"{where}: {at}node is not an address")
        if not _HASH.fullmatch(update):
            raise FlchainError(f"{where}: {at}update is not 0x + 64 lowercase hex digits")
        if not _SIGNATURE.fullmatch(need(raw, "signature", str, at)):
            raise FlchainError(f"{where}: {at}signature is not 0x + 130 hex digits")
        claimed, score = need(raw, "claimed", int, at), need(raw, "score", int, at)
        if not 0 <= claimed < 2**256 or not 0 <= score < 2**256:
            raise FlchainError(f"{where}: {at}claimed and score must be uint256")
        clip = float(need(raw, "clip", (int, float), at))
        if not math.isfinite(clip):
            raise FlchainError(f"{where}: {at}clip must be finite")
        entries.append(
            Entry(node, update, claimed, raw["signature"], score, clip, str(raw.get("reason", ""))[:500])
        )
    if [e.node.lower() for e in entries] != sorted(e.node.lower() for e in entries):
        raise FlchainError(f"{where}: entries are not in canonical order (by node address)")
    if len({e.node.lower() for e in entries}) != len(entries):
        raise FlchainError(f"{where}: a node has two entries")
    return RoundManifest(
        need(data, "chain_id", int, ""),
        to_checksum_address(ledger),
        need(data, "task", int, ""),
        need(data, "round", int, ""),
        data["parent"],
        data["model"],
        need(data, "scoring", str, ""),
        factors["claim_cap"],
        factors["step"],
        tuple(entries),
    )
