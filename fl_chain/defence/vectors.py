"""A model's arrays as one float64 vector and back, and the cosine between two such vectors: the one
flattening every defence (scores, evidence, trust, influence bounds, the root anchor) measures updates
with. Order is always the array order of the reference model `previous`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Arrays = Mapping[str, np.ndarray]


def previous_vector(previous: Arrays) -> np.ndarray:
    """The model as one float64 vector (array order of `previous`, as flat_delta)."""
    return np.concatenate([np.asarray(previous[k], np.float64).ravel() for k in previous])


def flat_delta(update: Arrays, previous: Arrays) -> np.ndarray:
    """update - previous as one float64 vector (array order of `previous`)."""
    return np.concatenate([(np.asarray(update[k], np.float64) - previous[k]).ravel() for k in previous])


def unflatten(vector: np.ndarray, like: Arrays) -> dict[str, np.ndarray]:
    """A flat vector back into named arrays shaped (and typed) like `like`."""
    out, start = {}, 0
    for name, ref in like.items():
        out[name] = vector[start : start + ref.size].reshape(ref.shape).astype(ref.dtype)
        start += ref.size
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity (0 when either vector is zero)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0
