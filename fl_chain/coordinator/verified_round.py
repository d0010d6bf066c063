"""The coordinator's side of a verified round: the weights and model it derives (defence/derivation.py, the
same functions a validator runs), and the manifest that discloses every signed update it received and every
admitted node that answered without one (protocol/manifest.py's unsigned entries). It reads
a round's screening through the fields it needs (Disclosed), so it depends on no Flower message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from fl_chain.defence.derivation import effective_weights
from fl_chain.protocol.manifest import EXCLUDED_SCORE, Entry, RoundManifest, canonical, unsigned_entry
from fl_chain.protocol.task_rules import TaskRules
from fl_chain.protocol.update_signing import RoundContext, SignedUpdate


class Disclosed(Protocol):
    """What a verified round takes from the round's screening (coordinator/screening.py's Screened):
    participants are named by address."""

    updates: dict[str, dict[str, np.ndarray]]  # accepted, as aggregated (after any clip)
    originals: dict[str, dict[str, np.ndarray]]  # accepted, as sent
    weights: dict[str, float]
    signed: dict[str, SignedUpdate]  # the accepted updates' checked signatures
    claims: dict[str, SignedUpdate]  # everything signed for this round, dropped replies included
    clipped: dict[str, float]
    dropped: dict[str, str]
    responded: set[str]  # admitted nodes that answered the round's message, whatever became of the reply


@dataclass
class VerifiedRound:
    """A manifest and the updates it names (update hash -> the arrays as sent, whose canonical bytes the
    store writes once, streamed: no serialised copy of an update is held), ready to publish."""

    manifest: RoundManifest
    blobs: dict[str, Mapping[str, np.ndarray]] = field(default_factory=dict)

    @property
    def root(self) -> bytes:
        """The updates root to commit."""
        return self.manifest.root()


def canonical_weights(screened: Disclosed, claim_cap: float) -> dict[str, int]:
    """Put the accepted updates in canonical order and give each the integer weight a validator derives
    from the signed claims (screened.weights follows, for scoring)."""
    order = sorted(screened.updates, key=str.lower)
    weights = effective_weights({w: screened.signed[w].weight for w in order}, claim_cap)
    screened.updates = {w: screened.updates[w] for w in order}
    screened.weights = {w: float(weights[w]) for w in order}
    return weights


def build(
    context: RoundContext,
    screened: Disclosed,
    scores: Mapping[str, int],
    parent: bytes,
    model_hash: bytes,
    rules: TaskRules,
    step: float,
) -> VerifiedRound:
    """The round's manifest: an entry for every update a node signed for this round, included (with its
    score and clip factor) or excluded (with the reason), an unsigned entry (with the reason) for every
    other admitted node that answered, the task's rules (its on-chain rulesHash) and the included updates'
    blobs as sent."""
    entries, blobs = [], {}
    for who, signed in screened.claims.items():
        common = {"node": who, "update": "0x" + signed.update_hash.hex(), "claimed": signed.weight}
        if who in screened.updates and who in scores:
            blobs[common["update"]] = screened.originals[who]
            entry = Entry(
                **common,
                signature=signed.signature,
                score=int(scores[who]),
                clip=float(screened.clipped.get(who, 1.0)),
            )
        else:
            reason = screened.dropped.get(who, "not aggregated")
            entry = Entry(**common, signature=signed.signature, score=EXCLUDED_SCORE, reason=reason)
        entries.append(entry)
    for who in screened.responded - set(screened.claims):  # answered without a valid signed claim
        entries.append(unsigned_entry(who, screened.dropped.get(who, "no valid signed claim")))
    manifest = RoundManifest(
        context.chain_id,
        context.ledger,
        context.task,
        context.round,
        "0x" + parent.hex(),
        "0x" + model_hash.hex(),
        rules,
        float(step),
        canonical(entries),
    )
    return VerifiedRound(manifest, blobs)


POSTED_NOT_RECEIVED = "claim posted on-chain; no usable signed reply received"


def disclose_posted(
    built: VerifiedRound, posted: Mapping[str, tuple[bytes, int]], missed: list[str]
) -> tuple[VerifiedRound, list[str]]:
    """The round with every node that posted its claim on-chain for it (ModelLedger.postClaim; node ->
    (update hash, weight)) disclosed, and the missed list without them: validators dispute a round that
    leaves a posting node out or records it missed. A posting node the manifest does not disclose (its
    reply never arrived, or came unsigned) gets an excluded entry of its posted claim, unsigned (its
    transaction is its signature: verify/round_check.py checks it against the event)."""
    manifest = built.manifest
    added = [
        Entry(node, "0x" + update_hash.hex(), weight, "", EXCLUDED_SCORE, reason=POSTED_NOT_RECEIVED)
        for node, (update_hash, weight) in posted.items()
        if manifest.entry_of(node) is None
    ]
    if added:
        manifest = replace(manifest, entries=canonical([*manifest.entries, *added]))
    kept = [m for m in missed if m.lower() not in posted]
    return VerifiedRound(manifest, built.blobs), kept
