"""A reply's checks and its update's hash, started the moment the reply arrives.

Screening (coordinator/screening.py) used to start when the round's last reply was in: every reply's
checks (array shapes and sizes, finiteness, distance from the model, metrics: `screening.check_reply`) and
its update's hash (for its signature) then ran while every node waited for the next round. Here the
DeadlineGrid hands each reply over as it is pulled (`DeadlineGrid.on_reply`) and its checks and hash run
in a background thread while the other nodes still train, so only the last reply's remain when the
round's replies are all in (numpy and hashlib release the GIL; a node that trains on the other core is
not slowed by more than the hash's share). A reply's hash and its content checks (finiteness and
distance, one pass over the update each) run side by side: the last reply's are what the round waits
for, and the nodes are idle then. Screening then reads the results; a reply that did not come
through the grid (or whose checks raised) is checked in line, exactly as before, so the outcome of a
round does not depend on which path a reply took.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from flwr.app import Message

from fl_chain.coordinator.screening import ScreeningPolicy, check_contents, read_reply
from fl_chain.protocol.model_bytes import HashSpans


@dataclass(frozen=True)
class Checked:
    """One reply's checks: why it is unusable (or None), its update's arrays (read-only views of the
    reply's bytes), its claimed weight, and its update's hash (None when unusable)."""

    reason: str | None
    arrays: dict[str, np.ndarray]
    weight: float
    update_hash: bytes | None


class EarlyChecks:
    """One round's early checks (see the module docstring): `submit` each reply as it arrives, read
    `checked(reply)` while screening, then `close`."""

    def __init__(self, previous: Mapping[str, np.ndarray], policy: ScreeningPolicy) -> None:
        self._previous, self._policy = previous, policy
        workers = os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flchain-check")
        # a pool of its own: a check waits for its hash, so sharing the checks' workers could deadlock
        self._hashes = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flchain-hash")
        self._futures: dict[int, tuple[Message, Future[Checked]]] = {}
        # when each update hash ran; screening's own hashes join these (screen_replies' HashPool)
        self.spans = HashSpans()

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

    def close(self) -> None:
        """Let the threads go; checks still running finish unread."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._hashes.shutdown(wait=False, cancel_futures=True)

    def _check(self, reply: Message) -> Checked:
        read = read_reply(reply, self._previous)
        if isinstance(read, str):
            return Checked(read, {}, 0.0, None)
        arrays, metrics = read
        hashing = self._hashes.submit(self.spans.hash, arrays)
        reason, weight = check_contents(arrays, metrics, self._previous, self._policy)
        if reason is not None:
            hashing.cancel()  # an unusable update's hash is never read (one already running finishes)
            return Checked(reason, arrays, weight, None)
        return Checked(reason, arrays, weight, hashing.result())
