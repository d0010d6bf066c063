"""Checks on a training reply before it may reach aggregation: one bad reply never aborts a round.
Every number a node sends (array values, its example count, any metric) is checked for type,
finiteness and range before anything uses it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fl_chain.defence.gram import squared_distance


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
    for name, ref in reference.items():
        value = update[name]
        if value.shape != ref.shape:
            return f"array {name!r} has shape {value.shape}, expected {ref.shape}"
        if value.dtype != ref.dtype:
            return f"array {name!r} has dtype {value.dtype}, expected {ref.dtype}"
    # one blocked pass for finiteness and the distance: no model-sized temporaries (defence/gram.py)
    squared = squared_distance(update, reference, list(reference))
    if isinstance(squared, str):
        return f"array {squared!r} contains NaN or Inf"
    norm = squared**0.5
    if norm > max_update_norm:
        return f"update norm {norm:.3g} exceeds the limit {max_update_norm:.3g}"
    return None


MAX_WEIGHT = 2**53  # an example count above this is no count (and no longer exact as a float)
MAX_METRIC = 1e15  # any other metric beyond this magnitude is not a loss, an accuracy or a count


def _number(value: object) -> float | None:
    """`value` as a float if it is a real number (not a bool, string or container), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return float("inf")


def check_metrics(metrics: Mapping[str, object], weight_key: str) -> str | None:
    """Why the reply's metrics are unusable, or None: the weight (`weight_key`, the claimed example
    count) must be a finite number in (0, 2**53], and every other metric a finite number (or list of
    them) of magnitude at most 1e15. Strategies read these values (weights, weighted averages), so a
    non-finite or absurd one is the sender's fault, refused before use, never an exception."""
    weight = _number(metrics.get(weight_key))
    if weight is None or not (0 < weight <= MAX_WEIGHT):  # NaN fails both comparisons
        got = _shown(metrics.get(weight_key))
        return f"metric {weight_key!r} missing or not a positive number up to 2**53 (got {got})"
    for name, value in metrics.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            number = _number(item)
            if number is None or not abs(number) <= MAX_METRIC:
                return f"metric {str(name)[:40]!r} is not a finite number up to 1e15 (got {_shown(item)})"
    return None


def _shown(value: object) -> str:
    """A short, printable form of a value a node sent."""
    return repr(value)[:40]
