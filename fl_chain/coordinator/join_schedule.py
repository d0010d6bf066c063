"""When the join gate may challenge a node, and which of its challenges are still open.

A challenge is a Flower message pushed to one node; its answer is pulled whenever the gate looks again,
so no round waits for a node that does not answer (coordinator/gate.py). Each challenge has its own
lifetime (`answer_timeout`, also the message's TTL at the SuperLink); one that expires, or is answered
with an error or a bad signature, puts its node on an exponential back-off (`backoff`, doubled at each
further failure, at most `backoff_cap`) before it is challenged again. A node id replaced by a re-join of
the same address under a new id (a restarted SuperNode) is retired: never challenged again, so the two
ids cannot take the address from each other in turn."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class JoinPolicy:
    """How the join gate challenges nodes and how long a round may wait for their answers."""

    answer_timeout: float = 60.0  # a challenge's own lifetime (nonce valid, message TTL); never a round's
    join_wait: float = 15.0  # the longest one round waits for the answers to the challenges it sent
    straggler_factor: float = 0.5  # once a round has what it needs, the rest get this x the time it took
    quiet: float = 1.0  # ... but at least this long after the last answer
    backoff: float = 30.0  # pause before a node whose challenge failed is challenged again ...
    backoff_cap: float = 900.0  # ... doubled at each further failure, never longer than this
    poll: float = 0.5  # the longest pause between two looks for answers


@dataclass
class ChallengeBook:
    """Open challenges by Flower message id, and each node's back-off after failed challenges."""

    policy: JoinPolicy = field(default_factory=JoinPolicy)
    clock: Callable[[], float] = time.monotonic
    retired: set[int] = field(default_factory=set)  # node ids replaced by a re-join: never asked again
    _open: dict[str, tuple[int, float]] = field(default_factory=dict)  # message id -> (node, expires at)
    _asking: dict[int, str] = field(default_factory=dict)  # node -> its open challenge's message id
    _failures: dict[int, int] = field(default_factory=dict)
    _retry_at: dict[int, float] = field(default_factory=dict)

    def may_ask(self, node_id: int) -> bool:
        """Whether the node may be challenged now: not retired, no open challenge, not backing off."""
        if node_id in self.retired or node_id in self._asking:
            return False
        return self.clock() >= self._retry_at.get(node_id, 0.0)

    def opened(self, message_id: str, node_id: int) -> None:
        """A challenge was pushed to `node_id` as message `message_id`."""
        self._open[message_id] = (node_id, self.clock() + self.policy.answer_timeout)
        self._asking[node_id] = message_id

    def message_ids(self) -> list[str]:
        """The open challenges' message ids (what the gate pulls answers for)."""
        return list(self._open)

    def open_nodes(self) -> set[int]:
        """Nodes with an open challenge."""
        return set(self._asking)

    def answered(self, message_id: str) -> int | None:
        """Close the challenge a reply answers; its node id, or None if it is not an open challenge."""
        entry = self._open.pop(message_id, None)
        if entry is None:
            return None
        self._asking.pop(entry[0], None)
        return entry[0]

    def expired(self) -> list[int]:
        """Close the challenges whose lifetime is over; their nodes (sorted)."""
        now = self.clock()
        gone = [m for m, (_, expires) in self._open.items() if expires <= now]
        return sorted(n for n in (self.answered(m) for m in gone) if n is not None)

    def failed(self, node_id: int) -> float:
        """Record a failed challenge; the pause (seconds) before the node is asked again."""
        failures = self._failures.get(node_id, 0) + 1
        self._failures[node_id] = failures
        pause = min(self.policy.backoff_cap, self.policy.backoff * 2 ** min(failures - 1, 32))
        self._retry_at[node_id] = self.clock() + pause
        return pause

    def succeeded(self, node_id: int) -> None:
        """The node answered correctly: no back-off any more."""
        self._failures.pop(node_id, None)
        self._retry_at.pop(node_id, None)

    def retire(self, node_id: int) -> None:
        """Never challenge this node id again (its address re-joined under another id)."""
        self.retired.add(node_id)
        if node_id in self._asking:
            self._open.pop(self._asking.pop(node_id), None)


class Patience:
    """How long one round waits for the answers to the challenges it sent: until `join_wait` passed, or
    until what it needs holds and no answer came for `straggler_factor` x the time that took (at least
    `quiet` seconds). Answers that keep coming (simulated nodes answer one after another) are all taken;
    a node that does not answer costs the round that grace, once."""

    def __init__(self, policy: JoinPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        """Start counting now."""
        self.policy, self.clock = policy, clock
        self.started = clock()
        self.reached: float | None = None  # seconds until what the round needs held
        self.last = 0.0  # seconds until the last answer
        self._pause = min(0.05, policy.poll)

    def answered(self) -> None:
        """An answer came."""
        self.last = self.clock() - self.started

    def over(self, enough: Callable[[], bool]) -> bool:
        """Whether to stop waiting; `enough()` says whether the round has what it needs."""
        elapsed = self.clock() - self.started
        if self.reached is None and enough():
            self.reached = elapsed
        if elapsed >= self.policy.join_wait:
            return True
        if self.reached is None:
            return False
        grace = max(self.policy.quiet, self.policy.straggler_factor * self.reached)
        return elapsed - max(self.last, self.reached) >= grace

    def pause(self) -> None:
        """Sleep before the next look for answers (50 ms at first, longer up to `poll`)."""
        time.sleep(self._pause)
        self._pause = min(self._pause * 1.5, self.policy.poll)
