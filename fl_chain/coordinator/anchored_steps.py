"""The anchored steps on a screened round (coordinator/screening.py's Screened), in the order
coordinator/anchored_judging.py runs them: evidence verdicts against g0 (judge_with_evidence), the clip to
the size reference (clip_influence), the median clip (clip_to_median) and the backdoor filter
(filter_backdoors). Each changes the round's updates and the replies the wrapped strategy aggregates
together, and reads norms and cosines from one Gram matrix of the updates as sent and g0 (round_gram,
defence/gram.py) instead of passing over the parameters again."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fl_chain.coordinator.screening import Screened
from fl_chain.defence.backdoor import DirectionHistory, clip_factors, median_norm, root_cluster
from fl_chain.defence.derivation import clip_update
from fl_chain.defence.evidence import EvidenceBook, LabelCosine, Reference
from fl_chain.defence.gram import DeltaGram, delta_gram
from fl_chain.defence.influence import bound_influence
from fl_chain.wire.records import with_update


def round_gram(out: Screened, previous: Mapping[str, np.ndarray], root: np.ndarray | None) -> DeltaGram:
    """The Gram matrix of the round's accepted updates as they stand (before any clip: as sent) and g0,
    in one blocked pass: pass it as `gram` to judge_with_evidence, clip_influence and filter_backdoors."""
    gram = delta_gram(out.updates, previous, root=root)
    out.grams.append(gram)
    return gram


def _current(
    out: Screened, previous: Mapping[str, np.ndarray], root: np.ndarray | None, gram: DeltaGram | None
) -> DeltaGram:
    """The Gram matrix of the updates in `out.updates` as they stand now: the rows of `gram` (round_gram's,
    of the updates before any clip) for the updates still in, each scaled by its factor in `out.clipped`;
    without `gram`, one computed from `out.updates` (and `root`) as they are."""
    if gram is None:
        return delta_gram(out.updates, previous, root=root)
    return gram.rows(out.updates, out.clipped)


def judge_with_evidence(
    out: Screened,
    verified: Mapping[int, str],
    book: EvidenceBook,
    root: np.ndarray,
    previous: Mapping[str, np.ndarray],
    reference: Reference = None,
    directions: bool = True,
    line: float | None = None,
    gram: DeltaGram | None = None,
    label: LabelCosine | None = None,
) -> None:
    """Anchored evidence (defence/evidence.py): suspect updates leave this round's aggregate, with the reason;
    those whose evidence adds up are penalized. `reference`: the size yardstick, one or each node's
    (RootAnchor.size_references), if any;
    `directions`: whether g0's direction is evidence this round (RootAnchor.improves); `line`: the cosine
    below which it is suspect (RootAnchor.direction_line); `gram`: the round's (round_gram), if computed;
    `label`: who -> how close its update is to a one-label root update (RootAnchor.closest_labels).
    """
    current = _current(out, previous, root, gram)
    suspect, penalized = book.observe(current, reference, directions, line, label)
    for who, reason in suspect.items():
        out.dropped[who] = ("penalized: " + penalized[who]) if who in penalized else f"suspect: {reason}"
        del out.updates[who], out.weights[who]
    out.penalized |= set(penalized)
    out.suspect |= set(suspect) - set(penalized)
    out.accepted = [r for r in out.accepted if verified[r.metadata.src_node_id] not in suspect]


def clip_influence(
    out: Screened,
    verified: Mapping[int, str],
    reference: float,
    previous: Mapping[str, np.ndarray],
    ratio: float,
    gram: DeltaGram | None = None,
) -> dict[str, float]:
    """Clip the accepted updates to `ratio` x the size reference (defence/influence.py), both in
    `out.updates` and in the replies the wrapped strategy aggregates. Returns (and keeps in `out.clipped`)
    who -> the factor its update was scaled by, only those clipped. `gram`: the round's (round_gram), if
    computed. The factors are disclosed in a verified round's manifest; validators check they shorten
    and apply them to the updates as sent (defence/derivation.py), never recompute them."""
    current = None if ratio * reference <= 0 else _current(out, previous, None, gram)
    bounded = bound_influence(out.updates, previous, reference, ratio, current)
    clipped: dict[str, float] = {}
    for who, (arrays, factor) in bounded.items():
        out.updates[who], clipped[who] = arrays, factor
    for i, reply in enumerate(out.accepted):
        who = verified[reply.metadata.src_node_id]
        if who in bounded:
            out.accepted[i] = with_update(reply, arrays=out.updates[who])
    out.clipped = clipped
    return clipped


def filter_backdoors(
    out: Screened,
    verified: Mapping[int, str],
    root: np.ndarray,
    previous: Mapping[str, np.ndarray],
    clip: bool = True,
    gram: DeltaGram | None = None,
    history: DirectionHistory | None = None,
) -> float:
    """The backdoor filter (defence/backdoor.py): updates outside g0's cluster leave this round's
    aggregate without a penalty; with `clip`, those kept are clipped to the round's median update norm
    (the factor joins any earlier clip's in `out.clipped`). A verified round passes `clip` False: its
    validators accept disclosed exclusions but only the clipping the task's on-chain rules declare.
    `gram`: the round's (round_gram), if computed; `history`: the run's DirectionHistory, if the filter
    clusters the nodes' histories (this round's updates are added to it first). Returns the clipping
    bound (the noise scale)."""
    current = _current(out, previous, root, gram)
    if history is not None:
        keep = root_cluster(history.add(out.updates, previous, root))
        where = "the root update's history cluster"
    else:
        keep, where = root_cluster(current), "the root update's cluster"
    bound = median_norm(current)
    for who in set(current.members) - keep:
        out.dropped[who] = f"excluded: outside {where} (backdoor filter)"
        del out.updates[who], out.weights[who]
    factors = clip_factors(current, keep, bound) if clip else {}
    _apply_clips(out, verified, previous, factors)
    out.accepted = [r for r in out.accepted if verified[r.metadata.src_node_id] in keep]
    return bound


def clip_to_median(
    out: Screened,
    verified: Mapping[int, str],
    previous: Mapping[str, np.ndarray],
    ratio: float,
    gram: DeltaGram | None = None,
) -> float:
    """Clip every accepted update longer than `ratio` x the round's median update norm to that bound
    (FLAME's clipping without its clustering; the factor joins any earlier clip's in `out.clipped`), so an
    update that stays inside every evidence threshold but is long weighs no more than a median one. The
    median is the honest replies' while they are a majority; the step bound (influence.bound_step) caps
    what a majority can do. `gram`: the round's (round_gram), if computed. Returns the bound."""
    current = _current(out, previous, None, gram)
    bound = ratio * median_norm(current)
    _apply_clips(out, verified, previous, clip_factors(current, set(current.members), bound))
    return bound


def _apply_clips(
    out: Screened,
    verified: Mapping[int, str],
    previous: Mapping[str, np.ndarray],
    factors: Mapping[str, float],
) -> None:
    """Scale each update of `factors` by its factor, in `out.updates` and in the replies the wrapped
    strategy aggregates. A node clipped before is clipped once by the product of its factors from what
    it sent, as validators re-derive it (bit for bit)."""
    for who, factor in factors.items():
        total = out.clipped.get(who, 1.0) * factor
        sent = out.originals.get(who) if who in out.clipped else None
        out.updates[who] = (
            clip_update(previous, sent, total)
            if sent is not None
            else clip_update(previous, out.updates[who], factor)
        )
        out.clipped[who] = total
    for i, reply in enumerate(out.accepted):
        who = verified[reply.metadata.src_node_id]
        if who in factors:
            out.accepted[i] = with_update(reply, arrays=out.updates[who])
