"""Python reference of the Reputation contract's arithmetic (integer fixed point, SCALE = 1e6).

Used by tests to check the on-chain state and by selection and audits to predict or recompute it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fl_chain.protocol.fixedpoint import SCALE


@dataclass(frozen=True)
class ReputationParams:
    """Mirror of Reputation.Parameters (SCALE units)."""

    alpha: int = 300_000
    initial: int = 500_000
    miss_decay: int = 100_000
    penalty: int = 500_000
    threshold: int = 250_000

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        """The contract's struct order."""
        return (self.alpha, self.initial, self.miss_decay, self.penalty, self.threshold)


@dataclass
class ReputationModel:
    """Reputation values and Active flags of nodes, updated exactly as the contract does."""

    params: ReputationParams = field(default_factory=ReputationParams)
    values: dict[str, int] = field(default_factory=dict)
    active: dict[str, bool] = field(default_factory=dict)
    # Commitment mode's fold: the commit block of the round that suspended each node it holds suspended,
    # so a registrar's later approval (the registry's record of it) can be told from an older one.
    suspended_at: dict[str, int] = field(default_factory=dict)

    def approve(self, node: str) -> None:
        """Registrar approval: enroll, or reinstate (reset to initial if below the threshold)."""
        self.active[node] = True
        if node not in self.values or self.values[node] < self.params.threshold:
            self.values[node] = self.params.initial

    def suspend(self, node: str) -> None:
        """Registrar (or automatic) suspension."""
        self.active[node] = False

    def apply_round(
        self, scores: Sequence[tuple[str, int]], missed: Iterable[str] = (), penalized: Iterable[str] = ()
    ) -> list[str]:
        """Apply one committed round; return the nodes suspended automatically, in order."""
        p = self.params
        suspended: list[str] = []
        for node, score in scores:
            if not self.active.get(node):
                raise ValueError(f"{node} is not active")
            old = self.values[node]
            updated = (old * (SCALE - p.alpha) + score * p.alpha) // SCALE
            self.values[node] = max(updated, min(old, p.threshold))  # scores alone never suspend
        for nodes, factor in ((missed, SCALE - p.miss_decay), (penalized, SCALE - p.penalty)):
            for node in nodes:
                if not self.active.get(node):
                    continue
                self.values[node] = self.values[node] * factor // SCALE
                if self.values[node] < p.threshold:
                    self.suspend(node)
                    suspended.append(node)
        return suspended
