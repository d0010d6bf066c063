"""Deterministic aggregation of a verified round, and its re-derivation from the manifest.

The coordinator aggregates with exactly these functions and a validator (or `flchain audit`) runs them again
on the same inputs, so an honest round re-derives to the bit-identical model: updates are taken in
canonical order (by node address), every sum is accumulated in float64 one update at a time (elementwise,
so no reduction order depends on the machine), and the result is cast to the model's own dtypes last.

The aggregate is FedAvg of the included updates (what Flower's FedAvg and FedProx compute, up to float
rounding), each first shortened by its clip factor, with weights the signed example counts capped at
`claim_cap` x their median, and the step from the previous model then shortened by the step factor.
Clip and step factors come from the server's root set (defence/influence.py): a validator cannot recompute
them, only check that they shorten (<= 1) and see them per leaf, and that they are exactly 1 when the task's
rules turn that bound off (ratio 0). The scoring method, the claim cap and the ratios are the task's rules
(protocol/task_rules.py), which the caller checks against the task's on-chain rulesHash
(verify/round_check.py).

Scores: `cosine` (similarity with the median update) and `data-size` depend only on the updates and are
recomputed exactly. `fltrust`, `loss-delta`, `loo` and `gtg-shapley` need the coordinator's root or
validation data: they are reported as not re-derived (RECOMPUTABLE_SCORES).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fl_chain.defence import gram
from fl_chain.defence.scoring import ScoringPolicy, score_round
from fl_chain.protocol.manifest import RoundManifest
from fl_chain.protocol.model_bytes import hash_arrays

Arrays = Mapping[str, np.ndarray]
RECOMPUTABLE_SCORES = ("cosine", "data-size")


def effective_weights(claims: Mapping[str, int], claim_cap: float) -> dict[str, int]:
    """Each node's aggregation weight: its signed example count, at most floor(claim_cap x the median
    claim) (no cap when claim_cap <= 0). Integers, so nothing depends on float formatting."""
    if claim_cap <= 0 or not claims:
        return dict(claims)
    cap = int(claim_cap * float(np.median(list(claims.values()))))
    return {who: min(claim, cap) for who, claim in claims.items()}


def clip_update(previous: Arrays, arrays: Arrays, factor: float) -> dict[str, np.ndarray]:
    """`arrays` with its step from `previous` scaled by `factor`: previous + (value - previous) x factor
    per parameter in float64, cast back to each array's dtype. Computed a block of gram.BLOCK parameters
    at a time into the result (no float64 copy of a whole array: at 100M parameters those were three of
    800 MB per clipped update); elementwise, so the bits are the whole-array formula's."""
    if factor >= 1.0:
        return dict(arrays)
    out = {}
    for k, v in arrays.items():
        value, before = np.asarray(v), np.asarray(previous[k])
        result = np.empty(value.shape, value.dtype)
        flat, sent, base = result.reshape(-1), value.reshape(-1), before.reshape(-1)
        for lo in range(0, flat.size, gram.BLOCK):
            hi = min(lo + gram.BLOCK, flat.size)
            start = base[lo:hi].astype(np.float64)
            flat[lo:hi] = start + (sent[lo:hi].astype(np.float64) - start) * factor
        out[k] = result
    return out


def weighted_mean(
    previous: Arrays, updates: Sequence[Arrays], weights: Sequence[int]
) -> dict[str, np.ndarray]:
    """FedAvg of `updates` (in the order given) with integer `weights`, accumulated in float64, cast to
    `previous`'s dtypes; `previous` itself when there is nothing to average."""
    total = sum(weights)
    if not updates or total <= 0:
        return dict(previous)
    out = {}
    for k, v in previous.items():
        acc = np.zeros(v.shape, np.float64)
        for arrays, weight in zip(updates, weights, strict=True):
            acc += np.asarray(arrays[k], np.float64) * float(weight)
        out[k] = (acc / float(total)).astype(v.dtype, copy=False)
    return out


def aggregate(
    previous: Arrays, updates: Mapping[str, Arrays], weights: Mapping[str, int], step: float = 1.0
) -> dict[str, np.ndarray]:
    """The verified round's model: FedAvg in canonical order, then the step shortened by `step`."""
    order = sorted(updates, key=str.lower)
    model = weighted_mean(previous, [updates[w] for w in order], [weights[w] for w in order])
    return clip_update(previous, model, step)


@dataclass(frozen=True)
class Difference:
    """One thing that does not re-derive: which leaf (or b'' for the round) and what differs."""

    leaf: bytes
    what: str


def rederive(
    manifest: RoundManifest, previous: Arrays, updates: Mapping[str, Arrays]
) -> tuple[dict[str, np.ndarray], list[Difference]]:
    """Re-derive a round from its manifest, the previous model and the included updates (by update hash,
    0x hex): (the model, what differs from the manifest). Signatures, eligibility and the chain's records
    are checked by the caller (verify/round_check.py)."""
    differences: list[Difference] = []
    included = manifest.included
    rules = manifest.rules
    for entry in included:
        if not 0.0 < entry.clip <= 1.0:
            differences.append(Difference(entry.leaf(), f"clip factor {entry.clip} is not in (0, 1]"))
        elif rules.clip_ratio == 0 and entry.clip != 1.0:
            differences.append(
                Difference(entry.leaf(), f"clip factor {entry.clip}, but the task's rules clip nothing")
            )
    if not 0.0 < manifest.step <= 1.0:
        differences.append(Difference(b"", f"step factor {manifest.step} is not in (0, 1]"))
    elif rules.step_ratio == 0 and manifest.step != 1.0:
        differences.append(
            Difference(b"", f"step factor {manifest.step}, but the task's rules bound no step")
        )
    if differences:
        return dict(previous), differences
    clipped = {e.node: clip_update(previous, updates[e.update], e.clip) for e in included}
    weights = effective_weights({e.node: e.claimed for e in included}, manifest.claim_cap)
    model = aggregate(previous, clipped, weights, manifest.step)
    if "0x" + hash_arrays(model).hex() != manifest.model:
        differences.append(
            Difference(
                b"", f"the included updates aggregate to 0x{hash_arrays(model).hex()}, not {manifest.model}"
            )
        )
    if manifest.scoring in RECOMPUTABLE_SCORES and included:
        _, scores = recompute_scores(manifest.scoring, previous, clipped, weights)
        for entry in included:
            if scores[entry.node] != entry.score:
                differences.append(
                    Difference(
                        entry.leaf(),
                        f"score of {entry.node} is {entry.score}, re-derived {scores[entry.node]}",
                    )
                )
    return model, differences


def recompute_scores(
    method: str, previous: Arrays, clipped: Mapping[str, Arrays], weights: Mapping[str, int]
) -> tuple[dict[str, float], dict[str, int]]:
    """The scores of a recomputable method, from the clipped updates in canonical order."""
    order = sorted(clipped, key=str.lower)
    return score_round(
        ScoringPolicy(method),
        previous,
        {w: clipped[w] for w in order},
        {w: float(weights[w]) for w in order},
        None,
        0,
    )
