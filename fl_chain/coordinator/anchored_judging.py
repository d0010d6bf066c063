"""A round's steps anchored in the server's root update g0, between screening and aggregation: leave
suspect updates out and penalize on accumulated evidence (defence/evidence.py, with the single-label
excuse), clip to the size reference if configured, clip to the round's median norm (the median clip),
and the backdoor filter. Every step reads norms and cosines from one blocked Gram pass over the updates
as sent and g0 (defence/gram.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fl_chain.coordinator.anchored_steps import (
    clip_influence,
    clip_to_median,
    filter_backdoors,
    judge_with_evidence,
    round_gram,
)
from fl_chain.coordinator.policies import RoundPolicy
from fl_chain.coordinator.screening import Screened
from fl_chain.defence.anchor import RootAnchor
from fl_chain.defence.backdoor import DirectionHistory
from fl_chain.defence.evidence import EvidenceBook, LabelCosine
from fl_chain.defence.gram import ROOT, DeltaGram


@dataclass(frozen=True)
class Judged:
    """What the anchored steps leave the round: the size of a median honest update (None when the root
    set's size is unknown), the backdoor filter's clipping bound (the noise scale; 0 without it) and the
    cosine with g0 below which an update was suspect (0 without evidence rules; fltrust scores are
    measured from it, defence/scoring.py)."""

    reference: float | None
    noise_bound: float
    line: float = 0.0


def judge_with_root(
    screened: Screened,
    root: np.ndarray,
    directions: bool,
    anchor: RootAnchor,
    evidence: EvidenceBook | None,
    policy: RoundPolicy,
    admitted: Mapping[int, str],
    previous: Mapping[str, np.ndarray],
    seconds: dict[str, float],
    history: DirectionHistory | None = None,
) -> Judged:
    """Run the anchored steps on `screened` in place (see the module docstring). `directions`: whether
    g0's direction is evidence this round (RootAnchor.improves); `admitted`: node id -> address;
    `seconds`: the round's time split (the Gram pass's is noted as "gram"); `history`: the run's
    DirectionHistory when the backdoor filter clusters the nodes' histories (policy.backdoor.history)."""
    clipping = policy.influence.clip_ratio > 0
    # a verified round's validators accept no clip its on-chain rules do not declare; the backdoor
    # filter clips to the median itself
    median_clip = policy.influence.median_ratio > 0 and not policy.verified and not policy.backdoor.enabled
    gram = None
    if evidence is not None or clipping or median_clip or policy.backdoor.enabled:
        started = time.monotonic()
        gram = round_gram(screened, previous, root)
        seconds["gram"] = time.monotonic() - started
    claims = list(screened.weights.values())
    root_norm = gram.norm(ROOT) if gram is not None else None  # |g0| read once, not per yardstick
    reference = anchor.size_reference(root, float(np.median(claims)) if claims else None, root_norm)
    line = 0.0
    if evidence is not None:
        line = anchor.direction_line(evidence.policy.min_cosine, evidence.policy.agreement_slack)
        sizes = anchor.size_references(root, screened.weights, root_norm=root_norm)
        label = label_cosine(screened, anchor, gram, line, previous)
        judge_with_evidence(
            screened, admitted, evidence, root, previous, sizes, directions, line, gram, label
        )
    if reference is not None and clipping:
        clip_influence(screened, admitted, reference, previous, policy.influence.clip_ratio, gram)
    if median_clip:
        clip_to_median(screened, admitted, previous, policy.influence.median_ratio, gram)
    noise_bound = 0.0
    if policy.backdoor.enabled:  # a verified round only leaves updates out (its rules declare no clip)
        noise_bound = filter_backdoors(
            screened, admitted, root, previous, clip=not policy.verified, gram=gram, history=history
        )
    return Judged(reference, noise_bound, line)


def label_cosine(
    screened: Screened,
    anchor: RootAnchor,
    gram: DeltaGram | None,
    line: float,
    previous: Mapping[str, np.ndarray],
) -> LabelCosine:
    """The evidence rules' `label` for this round (defence/evidence.py): asked only of updates below
    the line, it measures all of those at the first question (RootAnchor.closest_labels: one root
    training per label for the round, not per update) and answers from that."""
    closest: dict[str, tuple[float, float]] | None = None

    def label(who: str) -> tuple[float, float] | None:
        nonlocal closest
        if closest is None:
            below = {
                w: arrays
                for w, arrays in screened.updates.items()
                if gram is None or w not in gram.members or gram.cosine(w, ROOT) < line
            }
            closest = anchor.closest_labels(below, previous)
        return closest.get(who)

    return label
