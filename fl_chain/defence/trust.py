"""FLTrust's arithmetic (Cao et al., NDSS 2021), pure numpy: trust_i = ReLU(cos(g_i, g0)), each update
rescaled to the root update's norm, aggregate = previous + sum(trust_i * g_i_rescaled) / sum(trust_i).
A node's claimed example count plays no part, so a claim cannot buy weight."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fl_chain.defence.vectors import cosine


def trust_scores(deltas: Mapping[str, np.ndarray], root: np.ndarray) -> dict[str, float]:
    """ReLU(cos(delta_i, root)) of each participant."""
    return {who: max(0.0, cosine(delta, root)) for who, delta in deltas.items()}


def rescaled(delta: np.ndarray, root: np.ndarray) -> np.ndarray:
    """`delta` with the root update's norm (a zero update stays zero)."""
    norm = float(np.linalg.norm(delta))
    return delta * (float(np.linalg.norm(root)) / norm) if norm > 0 else delta


def trust_weighted_delta(deltas: Mapping[str, np.ndarray], root: np.ndarray) -> np.ndarray | None:
    """The FLTrust aggregate update, or None when no participant has positive trust."""
    trust = trust_scores(deltas, root)
    total = sum(trust.values())
    if total <= 0:
        return None
    return sum(trust[w] * rescaled(d, root) for w, d in deltas.items() if trust[w] > 0) / total
