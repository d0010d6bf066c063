"""Contribution scores: how much one participant's update helps the global model.

Method `loss-delta` (the default): apply participant i's update alone to the previous global model
and measure the server's validation loss: raw_i = L(previous) - L(update_i). Cost: one forward pass
over the validation split per participant. Raw scores are normalised per round to fixed-point integers
in [0, SCALE]: the best improvement scores SCALE, others proportionally, a harmful or useless update 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

SCALE = 1_000_000

Evaluator = Callable[[Mapping[str, np.ndarray]], float]


def loss_delta_scores(
    previous: Mapping[str, np.ndarray],
    updates: Mapping[str, Mapping[str, np.ndarray]],
    validation_loss: Evaluator,
) -> dict[str, float]:
    """Raw score per participant: validation loss of `previous` minus that of its update."""
    base = validation_loss(previous)
    return {who: base - validation_loss(arrays) for who, arrays in updates.items()}


def normalise(raw: Mapping[str, float]) -> dict[str, int]:
    """Per-round fixed-point scores in [0, SCALE]: positive improvements relative to the best one."""
    best = max((v for v in raw.values() if np.isfinite(v)), default=0.0)
    if best <= 0:
        return dict.fromkeys(raw, 0)
    return {
        who: round(SCALE * min(max(v, 0.0), best) / best) if np.isfinite(v) else 0 for who, v in raw.items()
    }


SCORERS = {"loss-delta": loss_delta_scores}
