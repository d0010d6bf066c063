"""Checks on a training reply before it may reach aggregation: one bad reply never aborts a round."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def check_update(
    update: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], max_update_norm: float
) -> str | None:
    """Why `update` is unusable against the global `reference` arrays, or None if it is fine.

    Rejects missing or extra arrays, other shapes or dtypes, NaN/Inf, and an update whose L2 distance
    from the reference exceeds `max_update_norm`.
    """
    missing = sorted(set(reference) - set(update))
    if missing:
        return f"missing array {missing[0]!r}"
    extra = sorted(set(update) - set(reference))
    if extra:
        return f"unexpected array {extra[0]!r}"
    squared = 0.0
    for name, ref in reference.items():
        value = update[name]
        if value.shape != ref.shape:
            return f"array {name!r} has shape {value.shape}, expected {ref.shape}"
        if value.dtype != ref.dtype:
            return f"array {name!r} has dtype {value.dtype}, expected {ref.dtype}"
        if not np.isfinite(value).all():
            return f"array {name!r} contains NaN or Inf"
        squared += float(np.sum((value.astype(np.float64) - ref.astype(np.float64)) ** 2))
    norm = squared**0.5
    if norm > max_update_norm:
        return f"update norm {norm:.3g} exceeds the limit {max_update_norm:.3g}"
    return None


def check_metrics(metrics: Mapping[str, object], weight_key: str) -> str | None:
    """Why the reply's metrics are unusable, or None."""
    value = metrics.get(weight_key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        return f"metric {weight_key!r} missing or not a positive number"
    return None
