"""A verified round's manifest: everything anyone needs to re-derive the round, except the update arrays.

The coordinator publishes it (JSON, under `rounds/t<task>-r<round>-<root>.json` of the task's store) and
commits the Merkle root of its leaves on-chain. One leaf per disclosed update, in LEAF_TYPES order
(node, update hash, weight the node signed, score): an included update carries its score (0..SCALE), an
update the coordinator left out carries EXCLUDED_SCORE, so the root binds what was excluded as well as what
was aggregated, and a coordinator cannot later disclose an exclusion it did not commit. Reasons and the
clip and step factors are not in the leaves: the validators re-derive the model from them and a false
one changes the model hash. The manifest carries the task's rules (protocol/task_rules.py: scoring method,
claim cap, clip and step ratios); they must hash to the task's on-chain rulesHash, so a round cannot
declare rules of its own.

A node that answered the round's train message without a valid signed claim (unsigned, signed by another
key, malformed, refused numbers) is disclosed too, by an unsigned entry: no signature, claimed 0, score
EXCLUDED_SCORE, the reason, and in place of an update hash the hash of that reason (reason_hash: it names
no update, and the leaf then binds the reason as well). Its leaf is in the root like any other, so the root
binds that the node answered and why it was left out; a complaint from a node disclosed as answered is
unfounded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from eth_utils import keccak, to_checksum_address

from fl_chain.errors import FlchainError
from fl_chain.protocol import fields
from fl_chain.protocol.documents import canonical_json, document_name, load_document
from fl_chain.protocol.merkle import StandardTree, leaf_hash
from fl_chain.protocol.task_rules import TaskRules, rules_from_object
from fl_chain.protocol.update_signing import LEAF_TYPES, SignedUpdate

MANIFEST_VERSION = 2  # 2: the rules are the task's rules document, not free fields
EXCLUDED_SCORE = 2**256 - 1  # the score of a disclosed, excluded update's leaf
EMPTY_ROOT = keccak(text="flchain.updates.none.v1")  # the root of a round with no disclosed update
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_REASON_CHARS = 500  # a reason is the coordinator's free text: kept short whatever it sent
UNSIGNED_DOMAIN = b"flchain.unsigned-reply.v1\x00"  # keeps a reason's hash apart from any update blob's


@dataclass(frozen=True)
class Entry:
    """One disclosed update: the node's signed claim and what the coordinator did with it."""

    node: str
    update: str  # 0x + 64 hex: the update blob's hash (what the node signed)
    claimed: int  # the weight the node signed (its example count)
    signature: str  # "" only for an excluded claim its node posted on-chain (ModelLedger.postClaim)
    score: int = 0  # included: its fixed-point score; excluded: EXCLUDED_SCORE
    clip: float = 1.0  # included: the factor its update was shortened by (<= 1)
    reason: str = ""  # excluded: why

    @property
    def included(self) -> bool:
        """Whether the update went into the aggregate."""
        return self.score != EXCLUDED_SCORE

    @property
    def unsigned(self) -> bool:
        """Whether it carries no signature: a reply without a valid signed claim (answered_without_claim),
        or a claim its node posted on-chain whose reply never came (the transaction is its signature)."""
        return self.signature == ""

    @property
    def answered_without_claim(self) -> bool:
        """Whether it discloses a reply without a valid signed claim (no update: its reason's hash)."""
        return self.unsigned and self.claimed == 0 and self.update == reason_hash(self.reason)

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
    rules: TaskRules  # the task's rules (its on-chain rulesHash): scoring, claim cap, clip/step ratios
    step: float  # the factor the aggregate's step was shortened by (<= 1)
    entries: tuple[Entry, ...] = field(default_factory=tuple)
    version: int = MANIFEST_VERSION

    @property
    def scoring(self) -> str:
        """The scoring method (which scores can be recomputed: defence/derivation.py)."""
        return self.rules.scoring

    @property
    def claim_cap(self) -> float:
        """Each signed weight counts at most claim_cap x the median (0: no cap)."""
        return self.rules.claim_cap

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
        return document_name(self.task, self.round, self.root())

    def entry_of(self, node: str) -> Entry | None:
        """The entry of a node, if disclosed."""
        return next((e for e in self.entries if e.node.lower() == node.lower()), None)

    def to_json(self) -> bytes:
        """Canonical JSON bytes."""
        data = asdict(self)
        data["entries"] = [asdict(e) for e in self.entries]
        data["rules"] = self.rules.document()
        return canonical_json(data)


def reason_hash(reason: str) -> str:
    """The "update hash" of an unsigned entry: 0x + keccak of the domain and the reason's UTF-8."""
    return "0x" + keccak(UNSIGNED_DOMAIN + reason.encode("utf-8", "replace")).hex()


def unsigned_entry(node: str, reason: str) -> Entry:
    """The entry disclosing that `node` answered the round without a valid signed claim, and why."""
    reason = reason[:MAX_REASON_CHARS]
    return Entry(node, reason_hash(reason), 0, "", EXCLUDED_SCORE, 1.0, reason)


def canonical(entries: list[Entry]) -> tuple[Entry, ...]:
    """Entries in canonical order."""
    return tuple(sorted(entries, key=lambda e: e.node.lower()))


def _signature(value: object, at: str) -> str:
    """An entry's signature; empty only for an excluded claim its node posted on-chain (the transaction
    signed it: verify/round_check.py checks the event)."""
    return "" if value == "" else fields.signature(value, at)


def _entry(raw: object, at: str) -> Entry:
    """One entry of a manifest's JSON; `at` labels it ("<where>: entries[<i>]")."""
    raw = fields.mapping(raw, at)
    if raw.get("signature") == "":
        return _unsigned(raw, at)
    return Entry(
        fields.address(raw.get("node"), f"{at}.node"),
        fields.hash_text(raw.get("update"), f"{at}.update"),
        fields.uint(raw.get("claimed"), f"{at}.claimed"),
        _signature(raw.get("signature"), f"{at}.signature"),
        fields.uint(raw.get("score"), f"{at}.score"),
        fields.finite(raw.get("clip"), f"{at}.clip"),
        str(raw.get("reason", ""))[:MAX_REASON_CHARS],
    )


def _unsigned(raw: dict, at: str) -> Entry:
    """An unsigned entry (see the module docstring): accepted only as excluded, with no weight and the
    hash of its reason for an update hash, so it cannot carry anything into the aggregate nor stand for
    a signed claim, and its leaf binds the reason; or, excluded, a claim its node posted on-chain
    (ModelLedger.postClaim: validators check it against the node's ClaimPosted)."""
    reason = raw.get("reason")
    if not isinstance(reason, str):
        raise FlchainError(f"{at}.reason is not text (an unsigned entry must say why it was left out)")
    if raw.get("update") != reason_hash(reason[:MAX_REASON_CHARS]):
        return _posted(raw, at, reason)
    entry = unsigned_entry(fields.address(raw.get("node"), f"{at}.node"), reason)
    said = (raw.get("update"), raw.get("claimed"), raw.get("score"), raw.get("clip"))
    if said != (entry.update, entry.claimed, entry.score, entry.clip) or isinstance(raw.get("claimed"), bool):
        raise FlchainError(
            f"{at} has no signature: it must be excluded (score 2**256-1) with claimed 0, clip 1 and the "
            "hash of its reason as update"
        )
    return entry


def _posted(raw: dict, at: str, reason: str) -> Entry:
    """An unsigned entry disclosing a claim posted on-chain: excluded, clip 1."""
    entry = Entry(
        fields.address(raw.get("node"), f"{at}.node"),
        fields.hash_text(raw.get("update"), f"{at}.update"),
        fields.uint(raw.get("claimed"), f"{at}.claimed"),
        "",
        fields.uint(raw.get("score"), f"{at}.score"),
        fields.finite(raw.get("clip"), f"{at}.clip"),
        reason[:MAX_REASON_CHARS],
    )
    if entry.included or entry.clip != 1.0:
        raise FlchainError(
            f"{at} has no signature: it must be excluded (score 2**256-1) with clip 1, either with claimed 0 "
            "and the hash of its reason as update, or as the claim its node posted on-chain"
        )
    return entry


def _entries(raw: object, where: str) -> tuple[Entry, ...]:
    """A manifest's entries, which must be in canonical order, one per node."""
    entries = tuple(
        _entry(e, f"{where}: entries[{i}]") for i, e in enumerate(fields.array(raw, f"{where}: entries"))
    )
    nodes = [e.node.lower() for e in entries]
    if nodes != sorted(nodes):
        raise FlchainError(f"{where}: entries are not in canonical order (by node address)")
    if len(set(nodes)) != len(nodes):
        raise FlchainError(f"{where}: a node has two entries")
    return entries


def parse_manifest(blob: bytes, where: str) -> RoundManifest:
    """A manifest from its JSON bytes; a one-line error naming `where` and the field otherwise."""
    data = load_document(blob, where, "manifest", MANIFEST_VERSION)
    return RoundManifest(
        fields.uint(data.get("chain_id"), f"{where}: chain_id"),
        to_checksum_address(fields.address(data.get("ledger"), f"{where}: ledger")),
        fields.uint(data.get("task"), f"{where}: task"),
        fields.uint(data.get("round"), f"{where}: round"),
        fields.hash_text(data.get("parent"), f"{where}: parent"),
        fields.hash_text(data.get("model"), f"{where}: model"),
        rules_from_object(data.get("rules"), f"{where}: rules"),
        fields.finite(data.get("step"), f"{where}: step"),
        _entries(data.get("entries"), where),
    )
