"""The one fixed-point scale of every on-chain score, reputation, parameter and metric: 1.0 == SCALE."""

from __future__ import annotations

SCALE = 1_000_000


def to_fixed(value: float) -> int:
    """A real number in fixed point (rounded to the nearest unit)."""
    return round(value * SCALE)


def from_fixed(value: int) -> float:
    """A fixed-point integer as a real number."""
    return value / SCALE
