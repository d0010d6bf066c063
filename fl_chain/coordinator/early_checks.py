"""A reply's checks and its update's hash, started the moment the reply arrives.

Screening (coordinator/screening.py) used to start when the round's last reply was in: every reply's
checks (array shapes and sizes, finiteness, distance from the model, metrics: `screening.check_reply`) and
its update's hash (for its signature) then ran while every node waited for the next round. Here the
DeadlineGrid hands each reply over as it is pulled (`DeadlineGrid.on_reply`) and its checks and hash run
in a background thread while the other nodes still train, so only the last reply's remain when the
round's replies are all in (numpy and hashlib release the GIL; a node that trains on the other core is
not slowed by more than the hash's share). Screening then reads the results; a reply that did not come
through the grid (or whose checks raised) is checked in line, exactly as before, so the outcome of a
round does not depend on which path a reply took.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from flwr.app import Message

from fl_chain.coordinator.screening import ScreeningPolicy, check_reply
from fl_chain.protocol.model_bytes import hash_arrays


@dataclass(frozen=True)
class Checked:
    """One reply's checks: why it is unusable (or None), its update's arrays (read-only views of the
    reply's bytes), its claimed weight, and its update's hash (None when unusable or not asked for)."""

    reason: str | None
    arrays: dict[str, np.ndarray]
    weight: float
    update_hash: bytes | None


class EarlyChecks:
    """One round's early checks (see the module docstring): `submit` each reply as it arrives, read
    `checked(reply)` while screening, then `close`."""

    def __init__(self, previous: Mapping[str, np.ndarray], policy: ScreeningPolicy, hashing: bool) -> None:
        self._previous, self._policy, self._hashing = previous, policy, hashing
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="flchain-check")
        self._futures: dict[int, tuple[Message, Future[Checked]]] = {}
        self._lock = threading.Lock()
        self._hash_spans: list[tuple[float, float]] = []  # each update hash's start and end

    def submit(self, reply: Message) -> None:
        """Start checking `reply` in a background thread (an error reply has nothing to check)."""
        if not reply.has_error():
            self._futures[id(reply)] = (reply, self._pool.submit(self._check, reply))

    def checked(self, reply: Message) -> Checked | None:
        """`reply`'s checks, waiting for them if still running; None if it was not submitted or its
        checks raised (the caller then checks it in line)."""
        entry = self._futures.get(id(reply))
        if entry is None or entry[0] is not reply:  # the ids of objects alive together are unique
            return None
        try:
            return entry[1].result()
        except Exception:  # reported by the in-line check, with the sender's penalty
            return None

    def hash_seconds(self) -> float:
        """Seconds during which at least one update was being hashed (the union of the hashes' spans:
        replies arrive seconds apart, and the wait between them is not hashing)."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self._hash_spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total

    def close(self) -> None:
        """Let the threads go; checks still running finish unread."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _check(self, reply: Message) -> Checked:
        reason, arrays, weight = check_reply(reply, self._previous, self._policy)
        digest = None
        if reason is None and self._hashing:
            started = time.monotonic()
            digest = hash_arrays(arrays)
            ended = time.monotonic()
            with self._lock:
                self._hash_spans.append((started, ended))
        return Checked(reason, arrays, weight, digest)
