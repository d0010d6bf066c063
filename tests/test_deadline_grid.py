"""A slow node (its process, network or clock lags) never holds a round past the deadline derived from
the rounds before: it is left out of that round's replies, its late reply is never taken into a later
round, and, since its heartbeats go on, it is sampled again (the real-process version, a dead node, is
tests/test_faults.py::test_node_deaths_mid_run)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fl_chain.coordinator.deadline_grid import DeadlineGrid, DeadlinePolicy, poll_pause
from fl_chain.wire.records import arrays_to_record
from tests.conftest import flower_server_identity


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    with flower_server_identity(7):
        yield


class LaggingGrid(Grid):
    """Nodes answer each message after their own delay; every node keeps sending heartbeats."""

    def __init__(self, delays: dict[int, float]) -> None:
        self.delays = delays
        self._pending: dict[str, tuple[float, Message]] = {}  # message id -> (ready at, reply)
        self.pulled: list[tuple[int, int]] = []  # (node, round) of every reply handed out
        self._count = 0

    def set_run(self, run) -> None:
        """Unused."""

    @property
    def run(self):
        """A run with a fixed id."""
        return SimpleNamespace(run_id=7)

    def create_message(self, *args, **kwargs) -> Message:
        """Unused."""
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        """Every node is connected."""
        return list(self.delays)

    def get_nodes(self):
        """Heartbeats: each node's online_until moves on with the clock."""
        return [SimpleNamespace(node_id=n, online_until=time.time() + 30) for n in self.delays]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Each message gets an id; its reply becomes available after the node's delay."""
        ids = []
        for message in messages:
            self._count += 1
            message.metadata.__dict__["_message_id"] = f"m{self._count}"
            node = message.metadata.dst_node_id
            metrics = MetricRecord({"num-examples": 1, "round": int(message.content["config"]["round"])})
            reply = Message(RecordDict({"metrics": metrics}), reply_to=message)
            self._pending[message.metadata.message_id] = (time.monotonic() + self.delays[node], reply)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Replies whose time has come, for these ids only."""
        out = []
        for message_id in list(message_ids):
            ready, reply = self._pending.get(message_id, (float("inf"), None))
            if reply is not None and ready <= time.monotonic():
                del self._pending[message_id]
                out.append(reply)
                self.pulled.append((reply.metadata.src_node_id, int(reply.content["metrics"]["round"])))
        return out

    def release(self, node: int) -> None:
        """Make `node`'s pending replies available now (a node held back with an infinite delay)."""
        for message_id, (_, reply) in list(self._pending.items()):
            if reply.metadata.src_node_id == node:
                self._pending[message_id] = (0.0, reply)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Unused: DeadlineGrid pushes and pulls."""
        raise NotImplementedError


def _round(grid: DeadlineGrid, nodes: list[int], rnd: int) -> tuple[list[int], float]:
    from flwr.app import ConfigRecord

    messages = [
        Message(
            RecordDict(
                {
                    "arrays": arrays_to_record({"w": np.zeros(2, np.float32)}),
                    "config": ConfigRecord({"round": rnd}),
                }
            ),
            dst_node_id=n,
            message_type="train",
        )
        for n in nodes
    ]
    started = time.monotonic()
    replies = grid.send_and_receive(messages, timeout=120.0)
    return sorted(r.metadata.src_node_id for r in replies), time.monotonic() - started


def test_a_slow_node_is_missed_and_its_late_reply_never_counts() -> None:
    lagging = LaggingGrid({1: 0.05, 2: 0.05, 3: 0.05})
    grid = DeadlineGrid(lagging, DeadlinePolicy(floor=0.3, factor=2.0, poll=0.05))
    assert _round(grid, [1, 2, 3], 1)[0] == [1, 2, 3]  # round 1: the pace is learned
    lagging.delays[3] = 8.0  # node 3 turns slow: its process, network or clock lags
    repliers, took = _round(grid, [1, 2, 3], 2)
    assert repliers == [1, 2]
    assert took < 8.0  # the round ended at its derived deadline, not when node 3 would have answered
    assert grid.absent_nodes() == set()  # node 3's heartbeats went on: it may be sampled again
    lagging.delays[3] = 0.05
    assert _round(grid, [1, 2, 3], 3)[0] == [1, 2, 3]
    assert (3, 2) not in lagging.pulled  # its round-2 reply was never taken, not even late


def test_polls_pause_a_tenth_of_the_wait_between_a_floor_and_the_policys_longest() -> None:
    """A simulated round of 0.2 s is polled every 0.02 s (it ends at most ~10 % after its last reply,
    where a fixed back-off from 0.05 s had already grown to 0.17 s); a long round polls every `poll`."""
    assert [poll_pause(w, 0.5) for w in (0.0, 0.1, 0.2, 1.0, 3.0, 5.0, 600.0)] == pytest.approx(
        [0.02, 0.02, 0.02, 0.1, 0.3, 0.5, 0.5]
    )
    assert poll_pause(600.0, 2.0) == 2.0


def test_each_training_reply_is_handed_over_as_it_is_pulled() -> None:
    """DeadlineGrid.on_reply (coordinator/early_checks.py checks a reply from there): called once per
    reply as it is pulled, the fast node's before the slow one has answered: node 2 answers only once
    node 1's reply has been handed over (no timing assumed)."""
    lagging = LaggingGrid({1: 0.0, 2: float("inf")})
    grid = DeadlineGrid(lagging, DeadlinePolicy(poll=0.05))
    handed: list[int] = []

    def on_reply(reply: Message) -> None:
        handed.append(reply.metadata.src_node_id)
        if reply.metadata.src_node_id == 1:
            lagging.release(2)

    grid.on_reply = on_reply
    assert _round(grid, [1, 2], 1)[0] == [1, 2]
    assert handed == [1, 2]
