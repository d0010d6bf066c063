"""Attacks that work on the whole update vector and may carry state from round to round, for
experiments (apply_attack in experiments/attacks.py dispatches here):

- PoisonedFL-style consistency (Xie, Fang & Gong, 2024): every attacker sends s x m, with s one random
  sign vector fixed for the whole run (shared by the attackers through their `seed`) and m the magnitudes
  of the last global model change, scaled to the attacker's honest update size times `scale`; a
  consistent direction adds up over rounds where per-round defences see small, ordinary-looking updates.
  Every `period` rounds the attacker checks whether the global model moved along s (more than half the
  coordinates agreeing in sign); if not, it shrinks `scale` by `beta` to slip under the filters.
- adaptive (against flchain's own published thresholds, defence/evidence.py): an update whose cosine with
  the attacker's honest update (its estimate of the server's root direction) is just above the suspect
  line and whose size is just under the boost line, the rest of its length along the fixed sign vector.

State (a plain dict the caller keeps per node): "previous" (the last model received, flat), "anchor" (the
model at the start of PoisonedFL's window), "scale" and "since" (rounds in the window)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

import numpy as np

from fl_chain.defence.evidence import EvidencePolicy


def sign_vector(size: int, seed: int) -> np.ndarray:
    """The attackers' fixed random sign vector (+1/-1), the same for every attacker with `seed`."""
    return np.where(np.random.default_rng([seed, 7919]).random(size) < 0.5, -1.0, 1.0)


def poisonedfl_delta(
    sign: np.ndarray, last_change: np.ndarray | None, honest: np.ndarray, scale: float
) -> np.ndarray:
    """s x m: magnitudes m of the last global change (of the honest update in the first round),
    scaled to `scale` x the honest update's norm."""
    magnitude = np.abs(last_change) if last_change is not None and np.any(last_change) else np.abs(honest)
    norm = float(np.linalg.norm(magnitude))
    if norm == 0:
        return np.zeros_like(honest)
    return sign * magnitude * (scale * float(np.linalg.norm(honest)) / norm)


def moved_along(sign: np.ndarray, change: np.ndarray) -> bool:
    """Whether a global change agrees in sign with `sign` on more than half its non-zero coordinates."""
    moving = change != 0
    return bool(moving.any() and np.mean(np.sign(change[moving]) == sign[moving]) > 0.5)


def poisonedfl_step(
    attack: Mapping[str, object], received: np.ndarray, honest: np.ndarray, state: MutableMapping[str, object]
) -> np.ndarray:
    """This round's PoisonedFL update; updates `state` (scale adapted every `period` rounds)."""
    sign = sign_vector(received.size, int(attack.get("seed", 0)))
    previous = state.get("previous")
    last_change = received - previous if isinstance(previous, np.ndarray) else None
    scale = float(state.get("scale", attack.get("scale", 1.0)))
    since = int(state.get("since", 0)) + 1
    anchor = state.get("anchor")
    if not isinstance(anchor, np.ndarray):
        anchor, since = received, 0
    elif since >= int(attack.get("period", 5)):
        if not moved_along(sign, received - anchor):
            scale *= float(attack.get("beta", 0.7))
        anchor, since = received, 0
    state.update(previous=received, anchor=anchor, scale=scale, since=since)
    return poisonedfl_delta(sign, last_change, honest, scale)


def adaptive_delta(honest: np.ndarray, sign: np.ndarray, cosine: float, size: float) -> np.ndarray:
    """An update with cosine `cosine` to `honest` and norm `size` x |honest|, the rest of its length
    along `sign` made orthogonal to `honest`."""
    norm = float(np.linalg.norm(honest))
    if norm == 0:
        return np.zeros_like(honest)
    unit = honest / norm
    away = sign - float(sign @ unit) * unit
    away /= float(np.linalg.norm(away)) or 1.0
    return size * norm * (cosine * unit + np.sqrt(max(0.0, 1.0 - cosine**2)) * away)


def adaptive_step(attack: Mapping[str, object], honest: np.ndarray) -> np.ndarray:
    """The adaptive attacker's update: by default 0.01 above the suspect cosine and 0.9 x the boost
    ratio flchain publishes (EvidencePolicy); `cosine` and `size` override them."""
    policy = EvidencePolicy()
    cosine = float(attack.get("cosine", policy.min_cosine + 0.01))
    size = float(attack.get("size", 0.9 * policy.max_norm_ratio))
    return adaptive_delta(honest, sign_vector(honest.size, int(attack.get("seed", 0))), cosine, size)
