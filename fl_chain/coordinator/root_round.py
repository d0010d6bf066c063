"""The server's root update g0 of the current round (defence/anchor.py), trained in the background: g0 needs
only the global model and the round's config, so the server trains on its root set while the nodes train,
not after their replies arrive (one worker: one root training at a time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from fl_chain.defence.anchor import RootAnchor

DirectionsCount = Callable[[dict[str, np.ndarray], np.ndarray], bool]


class RootRound:
    """Starts g0's training with a round and hands it over when the round's replies are in."""

    def __init__(self, anchor: RootAnchor | None, needed: bool, directions_count: DirectionsCount) -> None:
        """`needed`: whether anything this run uses g0 (evidence, fltrust scores, influence bounds);
        `directions_count(previous, g0)`: whether g0's direction is evidence this round."""
        self.anchor = anchor if needed else None
        self.directions_count = directions_count
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flchain-root")
        self._future: Future[tuple[np.ndarray, bool]] | None = None

    def start(self, previous: dict[str, np.ndarray], config: dict) -> None:
        """Begin training g0 from `previous` with the round's training config (no-op without a root set)."""
        if self.anchor is not None:
            self._future = self._pool.submit(self._train, dict(previous), dict(config))

    def result(self) -> tuple[np.ndarray | None, bool, float]:
        """(g0 or None, whether its direction counts, seconds spent waiting for it)."""
        if self._future is None:
            return None, True, 0.0
        started = time.monotonic()
        root, directions = self._future.result()
        self._future = None
        return root, directions, time.monotonic() - started

    def _train(self, previous: dict[str, np.ndarray], config: dict) -> tuple[np.ndarray, bool]:
        root = self.anchor.delta(previous, config)
        return root, self.directions_count(previous, root)
