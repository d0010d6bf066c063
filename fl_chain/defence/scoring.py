"""Contribution scores: how much each participant's update is worth to the federation this round.

All methods share one interface (`SCORERS[name](round_input) -> raw score per participant`); raw scores
are normalised per round to fixed-point integers in [0, SCALE] relative to the round's median positive
score (`normalise`). Cost is counted in
evaluations of the server's validation loss (one forward pass over the validation split):

- `loss-delta`: apply the update alone to the previous model; the validation-loss drop.
  Cost: n evaluations.
- `loo`: leave-one-out, value of the FedAvg of all minus that of the FedAvg without i.
  Cost: n + 1 evaluations.
- `gtg-shapley`: GTG-Shapley (Liu et al. 2022), the Monte-Carlo Shapley value of i in the FedAvg
  coalition game, truncated within a permutation (once a prefix reaches v(N) within epsilon) and between
  rounds (if v(N) ~ v(empty)), with guided permutations (each participant leads in turn).
  Cost: new permutations stop once `budget` evaluations are spent (each coalition is evaluated once),
  after at least one permutation led by each participant; with few participants (n! <= 50 n) every
  permutation is used.
- `cosine`: cosine of i's update with the coordinate-wise median update, in the spirit of CGSV
  (Xu et al. 2021); needs no validation data. Cost: no evaluation, O(n d).
- `fltrust`: ReLU(cos(update_i, g0) - line) with the server's root update g0 (FLTrust, Cao et al. 2021,
  measured from the round's suspect line instead of from 0): the reference is the server's own training on
  its clean root set, not the other replies, so it holds with a majority of attackers. `line` is the cosine
  below which the evidence rules call an update suspect this round (RootAnchor.direction_line, -0.2 or
  lower), 0 (FLTrust's own) when no evidence rules run. Measured from the line, an update that stays just
  inside it scores nearly 0, while honest updates keep their scores once the model has converged and
  their cosines with g0 fall to about 0 (docs/scoring.md). A null update scores 0; an update the
  coordinator clipped to a fraction f of its length is credited f of its score (it counts for what was
  aggregated; a clip keeps its direction, so its cosine alone would not show it). Cost: one local
  training on the root set per round (shared with the evidence test and trust-weighted aggregation),
  O(n d).
- `data-size`: number of training examples reported (the naive baseline). Cost: nothing.

The value of a coalition S is v(S) = -L(FedAvg(S)), with v(∅) = -L(previous global model).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fl_chain.defence.gram import MEDIAN, ROOT, DeltaGram, delta_gram, median_cosines, root_gram
from fl_chain.protocol.fixedpoint import SCALE

Arrays = Mapping[str, np.ndarray]


@dataclass
class RoundInput:
    """What a scorer may use."""

    previous: Arrays
    updates: Mapping[str, Arrays]  # participant -> arrays it sent
    weights: Mapping[str, float]  # participant -> num-examples
    validation_loss: Callable[[Arrays], float] | None = None
    budget: int = 64  # evaluations per round for gtg-shapley
    seed: int = 0
    root: np.ndarray | None = None  # the server's root update g0, flattened (defence/anchor.py)
    # Gram matrices of `updates` exactly as they are here (and of this g0), computed earlier in the round
    grams: tuple[DeltaGram, ...] = ()
    # fltrust: the cosine with g0 an update's score is measured from (the round's suspect line)
    direction_line: float = 0.0
    # fltrust: who -> the factor the coordinator shortened its update by (a clip), credited that share
    clipped: Mapping[str, float] = field(default_factory=dict)
    evaluations: int = field(default=0, init=False)

    def loss(self, arrays: Arrays) -> float:
        """Validation loss, counting evaluations."""
        if self.validation_loss is None:
            raise ValueError("this scoring method needs the server's validation split")
        self.evaluations += 1
        return self.validation_loss(arrays)


def fedavg(
    previous: Arrays, updates: Mapping[str, Arrays], weights: Mapping[str, float], members: Iterable[str]
) -> dict[str, np.ndarray]:
    """Example-weighted average of the members' arrays (the previous model if there are none)."""
    members = list(members)
    if not members:
        return dict(previous)
    total = sum(weights[m] for m in members)
    return {
        k: (sum(updates[m][k].astype(np.float64) * weights[m] for m in members) / total).astype(v.dtype)
        for k, v in previous.items()
    }


def loss_delta_scores(inp: RoundInput) -> dict[str, float]:
    """Validation-loss drop when the participant's update alone replaces the previous model."""
    base = inp.loss(inp.previous)
    return {who: base - inp.loss(arrays) for who, arrays in inp.updates.items()}


def leave_one_out_scores(inp: RoundInput) -> dict[str, float]:
    """v(N) - v(N without i)."""
    everyone = list(inp.updates)
    full = -inp.loss(fedavg(inp.previous, inp.updates, inp.weights, everyone))
    return {
        who: full
        + inp.loss(fedavg(inp.previous, inp.updates, inp.weights, [m for m in everyone if m != who]))
        for who in everyone
    }


def gtg_shapley_scores(inp: RoundInput, epsilon: float = 1e-3) -> dict[str, float]:
    """GTG-Shapley: Monte-Carlo permutations, truncated when a prefix already reaches v(N) within
    `epsilon`, guided so each participant leads a permutation in turn, within `inp.budget` evaluations."""
    players = sorted(inp.updates)
    cache: dict[frozenset, float] = {}

    def value(members: frozenset) -> float:
        if members not in cache:
            arrays = fedavg(inp.previous, inp.updates, inp.weights, members) if members else inp.previous
            cache[members] = -inp.loss(arrays)
        return cache[members]

    empty, full = value(frozenset()), value(frozenset(players))
    shapley = dict.fromkeys(players, 0.0)
    if abs(full - empty) < epsilon:  # between-round truncation: nothing to share
        return shapley
    counts = dict.fromkeys(players, 0)
    max_permutations = 50 * len(players)

    def orders():
        # Few players: every permutation (the estimator is then exact up to truncation).
        if math.factorial(len(players)) <= max_permutations:
            yield from itertools.permutations(players)
            return
        rng = random.Random(inp.seed)
        for k in range(max_permutations):
            leader = players[k % len(players)]  # guided: each participant leads in turn
            rest = [p for p in players if p != leader]
            rng.shuffle(rest)
            yield [leader, *rest]

    for k, order in enumerate(orders()):
        # Stop starting permutations once the budget is spent (unless every coalition is already
        # evaluated, when more permutations are free), but give every participant one lead.
        if inp.evaluations >= inp.budget and k >= len(players) and len(cache) < 2 ** len(players):
            break
        previous_value, prefix = empty, frozenset()
        for who in order:
            prefix = prefix | {who}
            if abs(full - previous_value) < epsilon:  # within-round truncation
                current = previous_value
            else:
                current = value(prefix)
            counts[who] += 1
            shapley[who] += (current - previous_value - shapley[who]) / counts[who]
            previous_value = current
    return shapley


def exact_shapley(players: list[str], value: Callable[[frozenset], float]) -> dict[str, float]:
    """Exact Shapley values by enumerating all coalitions (for tests; 2^n evaluations)."""
    n = len(players)
    result = dict.fromkeys(players, 0.0)
    for who in players:
        others = [p for p in players if p != who]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for coalition in itertools.combinations(others, size):
                s = frozenset(coalition)
                result[who] += weight * (value(s | {who}) - value(s))
    return result


def cosine_scores(inp: RoundInput) -> dict[str, float]:
    """Cosine similarity of each update with the coordinate-wise median update (0 for a null update)."""
    return median_cosines(inp.updates, inp.previous, inp.grams)


def fltrust_scores(inp: RoundInput) -> dict[str, float]:
    """ReLU(cos(update_i, g0) - inp.direction_line) x the update's clip factor, with the server's root
    update g0 (FLTrust's trust score measured from the round's suspect line, credited for the share of
    the update that was aggregated); 0 for a null update, whose cosine says nothing."""
    if inp.root is None:
        raise ValueError("the fltrust score needs the server's root update (a validation split)")
    gram = root_gram(inp.updates, inp.previous, inp.root, inp.grams)
    return {
        who: max(0.0, gram.cosine(who, ROOT) - inp.direction_line) * inp.clipped.get(who, 1.0)
        if gram.norm(who) > 0
        else 0.0
        for who in inp.updates
    }


def data_size_scores(inp: RoundInput) -> dict[str, float]:
    """The number of examples each participant reports."""
    return {who: float(inp.weights[who]) for who in inp.updates}


# Methods that read only the updates (and g0), never evaluate a model: safe to run beside the aggregation.
UPDATES_ONLY = ("cosine", "fltrust", "data-size")

SCORERS: dict[str, Callable[[RoundInput], dict[str, float]]] = {
    "loss-delta": loss_delta_scores,
    "loo": leave_one_out_scores,
    "gtg-shapley": gtg_shapley_scores,
    "cosine": cosine_scores,
    "fltrust": fltrust_scores,
    "data-size": data_size_scores,
}


def normalise(raw: Mapping[str, float]) -> dict[str, int]:
    """Per-round fixed-point scores in [0, SCALE], relative to the round's typical contribution:
    score = clip(raw / m, 0, 1) x SCALE with m the median of the positive raw scores. A participant
    contributing at least as much as the typical one scores SCALE; one contributing nothing or harm 0.

    (Relative to the median rather than to the best one: near convergence honest contributions are
    small and uneven, and dividing by the single best would push ordinary honest nodes towards 0 and,
    through the reputation contract, into suspension.)
    """
    positive = [v for v in raw.values() if np.isfinite(v) and v > 0]
    if not positive:
        return dict.fromkeys(raw, 0)
    typical = float(np.median(positive))
    return {
        who: round(SCALE * min(max(v, 0.0), typical) / typical) if np.isfinite(v) else 0
        for who, v in raw.items()
    }


def find_outliers(
    previous: Arrays,
    updates: Mapping[str, Arrays],
    norm_ratio: float = 3.0,
    grams: list[DeltaGram] | None = None,
) -> dict[str, str]:
    """Updates to reject as outliers, with the reason: an update norm more than `norm_ratio` times the
    median norm or less than its 1/`norm_ratio` (boosted, noisy or free-riding updates), or pointing away
    from the coordinate-wise median update (cosine < 0, e.g. sign flips). Needs >= 3 updates. The Gram
    matrix it computes is appended to `grams`, if given (cosine scores read it when nothing changed)."""
    if len(updates) < 3:
        return {}
    gram = delta_gram(updates, previous, median=True)  # blocked: no model-sized copies per update
    if grams is not None:
        grams.append(gram)
    norms = {who: gram.norm(who) for who in updates}
    median_norm = float(np.median(list(norms.values())))
    ref_norm = gram.norm(MEDIAN)
    flagged = {}
    for who in updates:
        if median_norm > 0 and norms[who] > norm_ratio * median_norm:
            flagged[who] = (
                f"outlier: update norm {norms[who]:.3g} > {norm_ratio:g} x median {median_norm:.3g}"
            )
        elif median_norm > 0 and norms[who] < median_norm / norm_ratio:
            flagged[who] = (
                f"outlier: update norm {norms[who]:.3g} < median {median_norm:.3g} / {norm_ratio:g}"
            )
        elif ref_norm > 0 and gram.dot(who, MEDIAN) < 0:
            flagged[who] = "outlier: update points away from the median update"
    return flagged


@dataclass(frozen=True)
class ScoringPolicy:
    """How a round's accepted updates are scored."""

    method: str = "cosine"
    shapley_budget: int = 64
    seed: int = 0
    from_line: bool = True  # fltrust: measured from the round's suspect line (False: from 0, FLTrust's own)
    left_out_zero: bool = True  # an update left out as suspect (no penalty yet) scores 0


def score_round(
    policy: ScoringPolicy,
    previous: Arrays,
    updates: Mapping[str, Arrays],
    weights: Mapping[str, float],
    validation_loss: Callable[[Arrays], float] | None,
    round_number: int,
    root: np.ndarray | None = None,
    grams: tuple[DeltaGram, ...] = (),
    direction_line: float = 0.0,
    clipped: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, int]]:
    """(raw scores, fixed-point scores) of one round's accepted updates; empty when there are none.
    `grams`: Gram matrices already computed of `updates` exactly as they are (see RoundInput);
    `direction_line`, `clipped`: the round's suspect line and clip factors (fltrust, see RoundInput)."""
    if not updates:
        return {}, {}
    inp = RoundInput(
        previous,
        updates,
        weights,
        validation_loss,
        budget=policy.shapley_budget,
        seed=policy.seed + round_number,
        root=root,
        grams=grams,
        direction_line=direction_line,
        clipped=clipped or {},
    )
    raw = SCORERS[policy.method](inp)
    return raw, normalise(raw)
