"""Bounded influence, anchored in the server's root update g0 (defence/anchor.py): how far one update, and
one round's aggregate, may move the model. Neither bound is a penalty (a clipped node is not accused of
anything); both stop a boosted update, or a majority of them, from buying influence by size alone. The
bounds are multiples of the size reference (|g0| scaled to a median node's examples), never of the
other replies, so attackers cannot raise them. Sizes are read from a Gram matrix (defence/gram.py), computed
block by block: no model-sized vector per update."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fl_chain.defence.derivation import clip_update
from fl_chain.defence.gram import DeltaGram, delta_gram

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class InfluencePolicy:
    """Bounds in multiples of the size reference (0: off), and the median clip's ratio. Clipping to the
    size reference is off by default: it shortens honest non-IID updates too (docs/robustness.md measures
    what it costs); the step bound shortens honest steps by 8 % at worst (docs/anchor-calibration.md)."""

    clip_ratio: float = 0.0
    step_ratio: float = 1.5
    # each update clipped to this x the round's median update norm
    # (coordinator/anchored_steps.clip_to_median): relative to the other replies, unlike the two above,
    # so it bounds a minority only; 2 keeps honest Dirichlet(0.1) updates whole (docs/attacks.md
    # measures 1 and 3)
    median_ratio: float = 2.0


def influence_factors(norms: Mapping[str, float], reference: float, ratio: float) -> dict[str, float]:
    """who -> the factor shortening its update (of norm `norms[who]`) to `ratio` x the size reference,
    only for those over that bound, in the order of `norms`."""
    bound = ratio * reference
    if bound <= 0:
        return {}
    return {who: bound / norm for who, norm in norms.items() if norm > bound}


def bound_influence(
    updates: Mapping[str, Arrays],
    previous: Arrays,
    reference: float,
    ratio: float,
    gram: DeltaGram | None = None,
) -> dict[str, tuple[dict[str, np.ndarray], float]]:
    """Clip every update to `ratio` x the size reference (norm bounding, Sun et al. 2019, anchored in g0
    rather than in the other replies, so a majority cannot raise the bound): a boosted update then weighs
    no more than an honest one of the same direction. Returns who -> (its clipped arrays, the factor its
    update was scaled by), only for those over the bound, in the order of `updates`. Norms are read from
    `gram` (rows named as `updates`, their deltas as they stand), computed when not given."""
    if ratio * reference <= 0:
        return {}
    gram = delta_gram(updates, previous) if gram is None else gram
    factors = influence_factors({who: gram.norm(who) for who in updates}, reference, ratio)
    return {who: (clip_update(previous, updates[who], factor), factor) for who, factor in factors.items()}


def bound_step(
    model: Arrays, previous: Arrays, reference: float, ratio: float
) -> tuple[dict[str, np.ndarray], float]:
    """The aggregate, its step from `previous` shortened to at most `ratio` x the reference (a trust region
    around the server's own step), and the factor applied (1.0: untouched). Honest FedAvg steps measured
    at up to 1.63 x the size reference on Dir 0.1 data (docs/anchor-calibration.md), so a bound of
    1.5 shortens them by 8 % at worst and stops a majority of boosted updates from overshooting."""
    bound = ratio * reference
    norm = delta_gram({"step": model}, previous).norm("step")  # blocked: no model-sized float64 copy
    if bound <= 0 or norm <= bound:
        return dict(model), 1.0
    factor = bound / norm
    return clip_update(previous, model, factor), factor
