"""Min-Max and Min-Sum (Shejwalkar & Houmansadr, "Manipulating the Byzantine", NDSS 2021), omniscient
variant: the colluders know every benign update of the round and all send the same malicious update
mean + gamma x p, with p one of the paper's perturbation vectors (inverse unit vector of the mean,
inverse coordinate-wise std, inverse sign of the mean) and gamma as large as the paper's condition allows:

- Min-Max: the malicious update's largest distance to any benign update is at most the largest distance
  between two benign updates;
- Min-Sum: the sum of its squared distances to the benign updates is at most the largest such sum of any
  benign update.

gamma is found with the paper's halving search (start 10, stop when steps are below 1e-5). Pure numpy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PERTURBATIONS = ("unit-vec", "std", "sign")


def perturbation(benign: np.ndarray, kind: str) -> np.ndarray:
    """The paper's perturbation vector p for benign updates (rows): -mean/|mean|, -std or -sign(mean)."""
    mean = benign.mean(axis=0)
    if kind == "unit-vec":
        norm = float(np.linalg.norm(mean))
        return -mean / norm if norm > 0 else np.zeros_like(mean)
    if kind == "std":
        return -benign.std(axis=0)
    if kind == "sign":
        return -np.sign(mean)
    raise ValueError(f"unknown perturbation {kind!r}: expected one of {', '.join(PERTURBATIONS)}")


def largest_gamma(holds: Callable[[float], bool], start: float = 10.0, tolerance: float = 1e-5) -> float:
    """The paper's search: the largest gamma (up to about 2 x `start`) for which `holds`, by halving
    steps; 0 when no positive gamma holds."""
    gamma, step, success = start, start, 0.0
    while abs(success - gamma) > tolerance:
        if holds(gamma):
            success = gamma
            gamma += step / 2
        else:
            gamma -= step / 2
        step /= 2
    return success


def _squared_distances(points: np.ndarray, to: np.ndarray) -> np.ndarray:
    return np.sum((points - to) ** 2, axis=1)


def min_max(benign: np.ndarray, kind: str = "unit-vec") -> np.ndarray:
    """Min-Max's malicious update for benign updates `benign` (rows)."""
    mean, p = benign.mean(axis=0), perturbation(benign, kind)
    bound = max(float(_squared_distances(benign, b).max()) for b in benign)
    return mean + largest_gamma(lambda g: float(_squared_distances(benign, mean + g * p).max()) <= bound) * p


def min_sum(benign: np.ndarray, kind: str = "unit-vec") -> np.ndarray:
    """Min-Sum's malicious update for benign updates `benign` (rows)."""
    mean, p = benign.mean(axis=0), perturbation(benign, kind)
    bound = max(float(_squared_distances(benign, b).sum()) for b in benign)
    return mean + largest_gamma(lambda g: float(_squared_distances(benign, mean + g * p).sum()) <= bound) * p
