"""A training round that does not wait for nodes that are gone.

Flower's own `send_and_receive` polls for replies every 3 seconds until all have arrived or the run's
`timeout` (flchain's `federation.round_timeout`, 300 s by default) has passed: one node whose machine died
holds every round for the whole timeout, and a round always ends on a 3-second poll boundary. Here a
round's messages are pushed and pulled by hand (Flower's push_messages / pull_messages), and it ends
- as soon as every reply is in (the pause between polls is a tenth of the time waited so far, between
  0.02 s and `poll` seconds: a round ends at most ~10 % after its last reply, whether it is a simulated
  round of a fraction of a second or a real one of minutes, and a round of T seconds polls about
  10 ln(T / 0.2 s) + T / `poll` times),
- when no node still owing a reply is connected any more (Flower's own view: `get_node_ids` lists only
  nodes whose heartbeats are current),
- or at a deadline derived from the rounds that completed: `factor` x their median duration, at least
  `floor` seconds and at most the run's timeout (the first round, with nothing observed, gets the timeout).
What did not arrive is the strategy's business (ChainStrategy records those nodes as missed). A node that
owed a reply is then left out of sampling until Flower hears from it again (its heartbeat moves its
`online_until` on; a dead node's never does, until Flower drops it), so the next round does not wait for
it either.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from logging import WARNING

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore import log

from fl_chain.coordinator.gate import DelegatingGrid


@dataclass(frozen=True)
class DeadlinePolicy:
    """How long a training round may wait for its replies."""

    floor: float = 30.0  # never cut a round shorter than this (slow but healthy nodes)
    factor: float = 3.0  # deadline = factor x the median duration of the rounds observed
    history: int = 5  # how many completed rounds the median looks at
    poll: float = 0.5  # the longest pause between two polls for replies


def poll_pause(waited: float, longest: float) -> float:
    """The pause before the next poll for replies, `waited` seconds into a round: a tenth of it, between
    0.02 s and `longest` (see the module docstring)."""
    return min(max(0.1 * waited, 0.02), longest)


class DeadlineGrid(DelegatingGrid):
    """The Grid the wrapped strategy trains through (see the module docstring)."""

    def __init__(self, grid: Grid, policy: DeadlinePolicy | None = None) -> None:
        super().__init__(grid)
        self.policy = policy or DeadlinePolicy()
        self.durations: list[float] = []  # seconds until the last reply, of rounds where every node answered
        self.absent: dict[int, float] = {}  # node id -> its online_until when it failed to reply
        # called with each training reply as it is pulled (coordinator/early_checks.py starts its checks)
        self.on_reply: Callable[[Message], None] | None = None

    def deadline(self, timeout: float | None) -> float | None:
        """Seconds this round may wait: derived from completed rounds, never above `timeout`."""
        if not self.durations:
            return timeout
        recent = self.durations[-self.policy.history :]
        derived = max(self.policy.floor, self.policy.factor * statistics.median(recent))
        return derived if timeout is None else min(timeout, derived)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Push, then pull until every reply is in, every node still owed is gone, or the deadline."""
        messages = list(messages)
        if not any(m.content.array_records for m in messages):
            # model-less exchanges keep Flower's behaviour and timing (the join gate pushes and pulls
            # its challenges itself, coordinator/gate.py, and never comes through here)
            return list(self._grid.send_and_receive(messages, timeout=timeout))
        owed = set(self.push_messages(messages))
        destination = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        training = all(m.metadata.message_type.startswith("train") for m in messages)
        limit = self.deadline(timeout)
        started = time.monotonic()
        replies: list[Message] = []
        while owed:
            for reply in self.pull_messages(list(owed)):
                replies.append(reply)
                owed.discard(reply.metadata.reply_to_message_id)
                if training and self.on_reply is not None:
                    self.on_reply(reply)
            if not owed:
                if training:
                    self.durations.append(time.monotonic() - started)
                break
            elapsed = time.monotonic() - started
            if limit is not None and elapsed >= limit:
                log(
                    WARNING,
                    "flchain: round deadline %.0f s passed; %d node(s) did not reply",
                    limit,
                    len(owed),
                )
                break
            connected = set(self.get_node_ids())
            known = all(m in destination for m in owed)  # never end early on a node we cannot name
            if known and not any(destination[m] in connected for m in owed):
                log(WARNING, "flchain: %d node(s) owing a reply disconnected; the round goes on", len(owed))
                break
            time.sleep(poll_pause(elapsed, self.policy.poll))
        if owed:
            until = self._online_until()
            for node in {destination.get(m) for m in owed} - {None}:
                self.absent[node] = until.get(node, 0.0)
        return replies

    def absent_nodes(self) -> set[int]:
        """Nodes that owed a reply and have not been heard from since (see the module docstring)."""
        if not self.absent:
            return set()
        until = self._online_until()
        for node in list(self.absent):
            if node not in until or until[node] > self.absent[node]:
                del self.absent[node]  # gone from Flower's view (a new connection starts afresh), or alive
        return set(self.absent)

    def _online_until(self) -> dict[int, float]:
        return {int(info.node_id): float(info.online_until) for info in self.get_nodes()}
