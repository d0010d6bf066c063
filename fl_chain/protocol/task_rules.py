"""A task's rules: everything a validator re-derives a verified round with that the coordinator chooses,
fixed for the task's whole life.

The rules document is the canonical JSON of TaskRules (kind "task-rules", version 1). Its keccak-256 is
the task's `rulesHash`, stored on-chain when the task is created (`ModelLedger.createTask`), and the
document itself is published in the task's store as `rounds/rules-<hash hex>.json`. Every verified
round's manifest carries the rules it was derived with (protocol/manifest.py); validators and `flchain
audit` hash them and dispute a round whose rules are not the task's, so a coordinator cannot declare,
round by round, a scoring method validators skip, or a claim cap of 0 that lets one huge signed weight
dominate the aggregate.

What the rules bind (defence/derivation.py):
- `scoring`: the scoring method; `cosine` and `data-size` scores are recomputed, the others need the
  coordinator's root or validation data and are reported as not re-derived;
- `claim_cap`: each signed example count counts at most claim_cap x the round's median (0: no cap);
- `clip_ratio`, `step_ratio`: the influence bounds (defence/influence.py) in multiples of the root
  update's size. A validator cannot recompute the clip and step factors (they need the root set), but a
  ratio of 0 means no clipping: then every clip factor, or the round's step factor, must be exactly 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

from fl_chain.errors import FlchainError
from fl_chain.protocol import fields
from fl_chain.protocol.documents import canonical_json, load_document

RULES_KIND = "task-rules"
RULES_VERSION = 1
MAX_RULES_BYTES = 64 * 1024
# Every scoring method the coordinator implements (defence/scoring.py); RECOMPUTABLE_SCORES in
# defence/derivation.py says which of them a validator recomputes.
SCORING_METHODS = ("loss-delta", "loo", "gtg-shapley", "cosine", "fltrust", "data-size")
_FIELDS = ("scoring", "claim_cap", "clip_ratio", "step_ratio")


@dataclass(frozen=True)
class TaskRules:
    """See the module docstring. Build it with `task_rules` (checked), not directly."""

    scoring: str
    claim_cap: float
    clip_ratio: float
    step_ratio: float

    def document(self) -> dict:
        """The rules document as a JSON object."""
        return {
            "kind": RULES_KIND,
            "version": RULES_VERSION,
            "scoring": self.scoring,
            "claim_cap": float(self.claim_cap),
            "clip_ratio": float(self.clip_ratio),
            "step_ratio": float(self.step_ratio),
        }

    def to_json(self) -> bytes:
        """The canonical bytes published in the task's store (and hashed into rulesHash)."""
        return canonical_json(self.document())

    def rules_hash(self) -> bytes:
        """keccak-256 of the canonical document: the task's on-chain rulesHash."""
        return keccak(self.to_json())

    def describe(self) -> str:
        """One line for people (the audit, errors)."""
        return (
            f"scoring {self.scoring}, claim cap {self.claim_cap:g}, clip ratio {self.clip_ratio:g}, "
            f"step ratio {self.step_ratio:g}"
        )


def task_rules(scoring: str, claim_cap: float, clip_ratio: float, step_ratio: float, where: str) -> TaskRules:
    """Checked rules: a known scoring method and finite, non-negative numbers; a one-line error naming
    `where` and the field otherwise."""
    if scoring not in SCORING_METHODS:
        raise FlchainError(
            f"{where}: scoring {str(scoring)[:40]!r} is not a scoring method ({', '.join(SCORING_METHODS)})"
        )
    values = {}
    for name, value in (("claim_cap", claim_cap), ("clip_ratio", clip_ratio), ("step_ratio", step_ratio)):
        number = fields.finite(value, f"{where}: {name}")
        if number < 0:
            raise FlchainError(f"{where}: {name} is negative (0 turns it off)")
        values[name] = number
    return TaskRules(scoring, **values)


def rules_from_object(raw: object, where: str) -> TaskRules:
    """Rules from a parsed JSON object (a rules document, or the `rules` of a manifest)."""
    data = fields.mapping(raw, where)
    if data.get("kind") != RULES_KIND:
        raise FlchainError(f"{where}: kind is not {RULES_KIND!r}")
    if data.get("version") != RULES_VERSION or isinstance(data.get("version"), bool):
        raise FlchainError(f"{where}: task-rules version is not {RULES_VERSION}")
    unknown = sorted(set(data) - {"kind", "version", *_FIELDS})
    if unknown:  # a rule nobody checks must not ride along unhashed by intent
        raise FlchainError(f"{where}: unknown field {unknown[0][:40]!r}")
    scoring = fields.text(data.get("scoring"), f"{where}: scoring")
    return task_rules(scoring, data.get("claim_cap"), data.get("clip_ratio"), data.get("step_ratio"), where)


def parse_rules(blob: bytes, where: str) -> TaskRules:
    """A published rules document from its JSON bytes; a one-line error naming `where` otherwise."""
    if len(blob) > MAX_RULES_BYTES:
        raise FlchainError(f"{where}: a rules document larger than {MAX_RULES_BYTES} bytes")
    return rules_from_object(load_document(blob, where, "task rules", RULES_VERSION, RULES_KIND), where)


def rules_document_name(rules_hash: bytes) -> str:
    """`rules-<hash hex>.json`: the file name, in the store's `rounds/`, anyone fetches a task's rules by."""
    return f"rules-{rules_hash.hex()}.json"
