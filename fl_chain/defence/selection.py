"""Which verified nodes train this round, and how much local work each gets.

Rule (also in the README):

- weight of node i: w_i = reputation_i ** sharpness x reliability_i, where reputation is the on-chain
  value (0..1) and reliability_i = (answered_i + 1) / (selected_i + 2), the share of rounds it was
  selected in and answered in time (Laplace-smoothed, so a new node starts at 1/2);
- exploration: every weight is raised to at least `exploration` x the mean weight, and a node selected
  fewer than `warmup` times gets at least the mean weight, so new and recovering nodes keep being tried;
- k = max(min_nodes, ceil(fraction x number of candidates)) nodes are drawn without replacement with
  probability proportional to the weights; candidates are the verified, Active, connected nodes of this
  round, so nodes that join, leave, time out or get suspended change the draw from the next round on;
- local work: with `round_seconds` > 0, a node that declared its training throughput (samples/s, measured
  by `flchain node apply`) gets local_steps = max(1, floor(round_seconds x samples_per_sec / batch_size))
  mini-batches, so fast and slow nodes finish in about the same time; nodes without a declared throughput
  train the configured number of epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class NodeStats:
    """What the coordinator has seen of a node in this run."""

    selected: int = 0
    answered: int = 0

    @property
    def reliability(self) -> float:
        """Laplace-smoothed share of selected rounds answered in time."""
        return (self.answered + 1) / (self.selected + 2)


@dataclass
class Selector:
    """Reputation x reliability sampling with exploration (see the module docstring)."""

    fraction: float = 1.0
    min_nodes: int = 1
    sharpness: float = 2.0
    exploration: float = 0.1
    warmup: int = 1
    seed: int = 0
    stats: dict[str, NodeStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def weights(self, candidates: Sequence[str], reputation: Mapping[str, float]) -> dict[str, float]:
        """Sampling weight of each candidate."""
        raw = {
            c: max(reputation.get(c, 0.0), 0.0) ** self.sharpness
            * self.stats.setdefault(c, NodeStats()).reliability
            for c in candidates
        }
        mean = float(np.mean(list(raw.values()))) if raw else 0.0
        out = {}
        for c, w in raw.items():
            floor = mean if self.stats[c].selected < self.warmup else self.exploration * mean
            out[c] = max(w, floor, 1e-12)
        return out

    def select(self, candidates: Sequence[str], reputation: Mapping[str, float]) -> list[str]:
        """Draw this round's participants."""
        candidates = sorted(candidates)
        k = min(len(candidates), max(self.min_nodes, math.ceil(self.fraction * len(candidates))))
        if k == 0:
            return []
        w = self.weights(candidates, reputation)
        p = np.array([w[c] for c in candidates])
        chosen = self._rng.choice(len(candidates), size=k, replace=False, p=p / p.sum())
        return [candidates[i] for i in sorted(chosen)]

    def record(self, selected: Sequence[str], answered: Sequence[str]) -> None:
        """Update reliability after a round."""
        answered_set = set(answered)
        for node in selected:
            stats = self.stats.setdefault(node, NodeStats())
            stats.selected += 1
            stats.answered += node in answered_set


def local_steps(samples_per_sec: int, round_seconds: float, batch_size: int) -> int | None:
    """Mini-batches a node can train in `round_seconds`, or None to fall back to epochs."""
    if round_seconds <= 0 or samples_per_sec <= 0:
        return None
    return max(1, int(round_seconds * samples_per_sec // batch_size))
