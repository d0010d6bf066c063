"""The join gate cannot be stalled (issue 23, point 5). A connected node that never answers its identity
challenge holds no round: challenges are pushed and their answers pulled later, each challenge has its own
lifetime, and a node that let one expire is asked again only after an exponential back-off. A node that
restarts under a new Flower node id is admitted again once it answers a fresh challenge: its address moves
to the new id and the old id is never asked again.

First the gate alone, on a real anvil, with a Grid whose nodes answer after their own delay as Flower's
do; then the same with real processes: `flchain server`, two `flchain client`s and a silent SuperNode
(a real flower-supernode in `--isolation process` with no app executor: connected, heartbeating, it takes
messages and never answers), the default 60 s answer timeout."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from flwr.app import Message

from fl_chain.chain.identity import keystore_address
from fl_chain.chain.setup.localnode import free_port
from fl_chain.coordinator.gate import NodeGate
from fl_chain.coordinator.join_schedule import JoinPolicy
from fl_chain.errors import FlchainError
from fl_chain.runners.processes import Managed, spawn
from fl_chain.wire.records import AUTH_RECORD
from fl_chain.wire.report import NodeNotice, RoundReport, RunEvents, RunEventsReader
from tests.chainutil import LocalChain, new_nodes
from tests.conftest import flower_server_identity
from tests.test_e2e_deployment import _run, _spawn, registered_keys, stop_commands
from tests.test_strategy import RUN_ID, FakeGrid, Reply, node

FLOWER_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """Messages built in this test carry a ServerApp identity, as Flower's runtime would give them."""
    with flower_server_identity(RUN_ID):
        yield


class DelayedGrid(FakeGrid):
    """Nodes answer after their own delay (None: never), as a Flower grid delivers them: pushed messages
    get ids, `pull_messages` hands out the replies that have arrived, and `send_and_receive` polls until
    every reply is in or its timeout has passed, as Flower's own does."""

    def __init__(self, nodes: dict[int, Reply], delays: dict[int, float | None]) -> None:
        super().__init__(nodes)
        self.delays = delays
        self._ready: dict[str, float] = {}

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Each message gets an id; its reply arrives after the node's delay, or never."""
        ids = []
        for message in messages:
            message_id = f"m{len(self.sent)}"
            message.metadata.__dict__["_message_id"] = message_id
            self.sent.append(message)
            delay = self.delays.get(message.metadata.dst_node_id, 0.0)
            reply = None if delay is None else self.nodes[message.metadata.dst_node_id](message)
            if reply is not None:
                self._replies[message_id] = reply
                self._ready[message_id] = time.monotonic() + delay
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies that have arrived for these ids."""
        now = time.monotonic()
        ready = [i for i in message_ids if i in self._replies and self._ready[i] <= now]
        return [self._replies.pop(i) for i in ready]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Push, then pull until every reply is in or `timeout` passed (Flower's Grid.send_and_receive)."""
        owed = set(self.push_messages(list(messages)))
        end = time.monotonic() + (timeout or 0.0)
        replies: list[Message] = []
        while owed and time.monotonic() < end:
            got = list(self.pull_messages(owed))
            replies += got
            owed -= {r.metadata.reply_to_message_id for r in got}
            if owed:
                time.sleep(0.05)
        return replies

    def challenges_to(self, node_id: int) -> list[Message]:
        """The join challenges pushed to a node so far."""
        return [
            m
            for m in self.sent
            if m.metadata.dst_node_id == node_id and AUTH_RECORD in m.content.config_records
        ]


def test_a_silent_node_holds_no_round_and_is_not_asked_every_round(chain: LocalChain) -> None:
    """Node 3 is connected and never answers; the answer timeout is 20 s. The first round goes on a
    second after the two honest nodes answered; later rounds wait for nothing and do not ask node 3
    again while its challenge is open (before: every round waited the full 20 s for it, again)."""
    chain_id = chain.client.deployment.chain_id
    a, b, c = new_nodes(chain, 3)
    replies = {1: node(a, chain_id, 1, 0.1), 2: node(b, chain_id, 2, 0.1), 3: node(c, chain_id, 3, 0.1)}
    grid = DelayedGrid(replies, {1: 0.2, 2: 0.3, 3: None})
    gate = NodeGate(chain.client, RunEvents(), answer_timeout=20.0)
    for rnd in range(4):
        gate.start_round()
        started = time.monotonic()
        assert gate.wait_for(grid, 2, timeout=60.0) == {1, 2}
        took = time.monotonic() - started
        assert took < (3.0 if rnd == 0 else 0.5), (rnd, took)
    assert len(grid.challenges_to(3)) == 1  # asked once; its challenge is still open
    assert len(grid.challenges_to(1)) == len(grid.challenges_to(2)) == 1


def test_a_node_that_lets_its_challenges_expire_backs_off_exponentially(chain: LocalChain) -> None:
    """Each challenge lives 0.4 s; then the node is refused and asked again only after 0.8 s, 1.6 s,
    3.2 s: gaps between challenges grow, and a round never waits for the silent node."""
    chain_id = chain.client.deployment.chain_id
    a, b, c = new_nodes(chain, 3)
    replies = {1: node(a, chain_id, 1, 0.1), 2: node(b, chain_id, 2, 0.1), 3: node(c, chain_id, 3, 0.1)}
    grid = DelayedGrid(replies, {1: 0.0, 2: 0.0, 3: None})
    events: list = []
    policy = JoinPolicy(answer_timeout=0.4, backoff=0.8, backoff_cap=10.0, poll=0.05, quiet=0.0)
    gate = NodeGate(chain.client, RunEvents(callback=events.append), policy=policy)
    asked_at: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < 7.5:  # a round every 50 ms
        before = len(grid.challenges_to(3))
        round_started = time.monotonic()
        assert gate.wait_for(grid, 2, timeout=5.0) == {1, 2}
        assert time.monotonic() - round_started < 0.3
        if len(grid.challenges_to(3)) > before:
            asked_at.append(time.monotonic() - started)
        time.sleep(0.05)
    gaps = [later - earlier for earlier, later in itertools.pairwise(asked_at)]
    assert len(asked_at) == 4, asked_at  # at ~0, 1.2, 3.2 and 6.8 s; asking every round: ~100
    for gap, pause in zip(gaps, (0.8, 1.6, 3.2), strict=True):
        # The gap is seen by a 50 ms polling loop that a loaded machine delays: a margin, not a timing claim.
        assert pause + 0.4 - 0.35 <= gap <= pause + 0.4 + 1.0, (gaps, asked_at)
    refusals = [e for e in events if isinstance(e, NodeNotice) and e.node_id == 3]
    assert refusals and all("no answer to the identity challenge within 0.4 s" in e.reason for e in refusals)


def test_a_node_restarted_under_a_new_flower_id_is_admitted_again(chain: LocalChain) -> None:
    """Node 1 is admitted, its SuperNode restarts and comes back as node 9 with the same key: node 9 is
    admitted after answering a fresh challenge and node 1 is dropped for good, even if Flower still lists
    it (before: node 9 was refused, the address being 'already in use by node 1', and the round failed)."""
    chain_id = chain.client.deployment.chain_id
    a, b = new_nodes(chain, 2)
    grid = DelayedGrid({1: node(a, chain_id, 1, 0.1), 2: node(b, chain_id, 2, 0.1)}, {1: 0.1, 2: 0.1})
    events: list = []
    gate = NodeGate(chain.client, RunEvents(callback=events.append))
    assert gate.wait_for(grid, 2, timeout=10.0) == {1, 2}
    del grid.nodes[1]  # the SuperNode stops ...
    grid.nodes[9] = node(a, chain_id, 9, 0.1)  # ... and comes back under a new id
    grid.delays[9] = 0.1
    assert gate.wait_for(grid, 2, timeout=10.0) == {2, 9}
    assert gate.admitted == {2: b.address, 9: a.address}
    replaced = [e for e in events if isinstance(e, NodeNotice) and e.node_id == 1 and e.verdict == "refused"]
    assert len(replaced) == 1 and "replaced by node 9" in replaced[0].reason
    grid.nodes[1] = node(a, chain_id, 1, 0.1)  # the old id shows up again (Flower still lists it)
    asked_before = len(grid.challenges_to(1))
    for _ in range(3):
        assert gate.wait_for(grid, 2, timeout=10.0) == {2, 9}
    assert len(grid.challenges_to(1)) == asked_before  # never asked again: no flip-flop between ids


def test_too_few_nodes_still_fail_after_the_timeout_naming_the_silent_one(chain: LocalChain) -> None:
    """The gate waits for `min_nodes` as long as the round allows, and then says who did not answer."""
    chain_id = chain.client.deployment.chain_id
    (a,) = new_nodes(chain, 1)
    grid = DelayedGrid({1: node(a, chain_id, 1, 0.1)}, {1: None})
    gate = NodeGate(chain.client, RunEvents(), policy=JoinPolicy(answer_timeout=0.5, poll=0.05))
    expected = r"only 0 verified active nodes after 2 s.*no answer to the identity challenge"
    with pytest.raises(FlchainError, match=expected):
        gate.wait_for(grid, 1, timeout=2.0)


# ------------------------------------------------------------------------------------------- real processes


def _silent_supernode(superlink: str, log: Path, env: dict[str, str]) -> Managed:
    """A real SuperNode that connects and keeps its heartbeats but never answers: in process isolation
    it waits for an app executor that never comes."""
    cmd = [str(FLOWER_BIN / "flower-supernode"), "--superlink", superlink, "--insecure"]
    cmd += ["--isolation", "process", "--host", "127.0.0.1", "--port", str(free_port())]
    return spawn("silent SuperNode", cmd, log, env)


class Rounds:
    """Follows a run's events file: when each round report arrived, and the node notices."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.reader: RunEventsReader | None = None
        self.arrived: dict[int, float] = {}
        self.reports: dict[int, RoundReport] = {}
        self.notices: list[NodeNotice] = []

    def poll(self) -> None:
        """Read what the ServerApp wrote since the last call."""
        if self.reader is None:
            found = sorted(self.home.glob("runs/*/rounds.jsonl"))
            if not found:
                return
            self.reader = RunEventsReader(found[-1])
        for entry in self.reader.new_entries():
            if isinstance(entry, RoundReport):
                self.arrived[entry.round] = time.monotonic()
                self.reports[entry.round] = entry
            elif isinstance(entry, NodeNotice):
                self.notices.append(entry)

    def wait_round(self, rnd: int, server, timeout: float = 240.0) -> None:
        """Until round `rnd` was reported (or the server ended)."""
        deadline = time.monotonic() + timeout
        while rnd not in self.arrived and server.poll() is None and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.2)
        assert rnd in self.arrived, f"round {rnd} was not reported"


def test_a_round_waits_for_a_usable_replacement_while_the_old_id_still_looks_connected(
    chain: LocalChain,
) -> None:
    """The case the real-process test found: node 1 is admitted, fails to reply to a round (its SuperNode
    restarted) and Flower still lists it, while the restarted SuperNode connects as node 9. The round
    counts only nodes it can use (node 1 owes a reply), so it challenges node 9 and waits for its answer
    instead of starting with one usable node (before: the gate counted node 1, the round excluded it
    afterwards and Flower's sampling waited for a second node for ever, never collecting node 9's answer)."""
    chain_id = chain.client.deployment.chain_id
    a, b = new_nodes(chain, 2)
    grid = DelayedGrid({1: node(a, chain_id, 1, 0.1), 2: node(b, chain_id, 2, 0.1)}, {1: 0.1, 2: 0.1})
    gate = NodeGate(chain.client, RunEvents())
    assert gate.wait_for(grid, 2, timeout=10.0) == {1, 2}
    grid.nodes[9] = node(a, chain_id, 9, 0.1)  # the restarted SuperNode; node 1 is still listed
    grid.delays[9] = 0.5
    owes_a_reply = {1}

    def usable(nodes: set[int]) -> set[int]:
        return nodes - owes_a_reply

    started = time.monotonic()
    assert gate.wait_for(grid, 2, timeout=10.0, usable=usable) == {2, 9}
    assert 0.4 < time.monotonic() - started < 5.0
    assert len(grid.challenges_to(9)) == 1 and gate.admitted == {2: b.address, 9: a.address}
    with pytest.raises(FlchainError, match="only 1 verified active nodes after 1 s, 2 needed"):
        gate.wait_for(grid, 2, timeout=1.0, usable=lambda nodes: nodes - {9})


@pytest.mark.timeout(480)
def test_silent_node_and_restart_with_real_flower_processes(tmp_path: Path) -> None:
    """`flchain server` (a challenge may stay open 60 s), two clients and a silent SuperNode connected
    from the start. The join gate holds round 1 only until the two clients answered (plus a short
    grace) and later rounds not at all (the gate's time is in each round report): no round comes near
    the 60 s. After round 3 client 1 restarts (a new Flower node id): it is admitted again and trains in
    round 5. Before: round 1 and every later round waited 60 s for the silent node, and the restarted
    client was refused ('already in use by node ...') until the run failed for lack of nodes."""
    home = tmp_path / "home"
    env = {**os.environ, "FLCHAIN_KEY_PASSWORD": "join stall", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["FLCHAIN_TEST_MARKER"] = f"flchain-join-{uuid.uuid4()}"
    h = ["--home", str(home)]
    _run("chain", "up", "--detach", "--port", str(free_port()), *h, env=env)
    processes: list = []
    silent: Managed | None = None
    try:
        keys = registered_keys(tmp_path, 2, h, env)
        addresses = [keystore_address(k) for k in keys]
        config = tmp_path / "run.toml"
        config.write_text("[federation]\nrounds = 5\nmin_nodes = 2\nauth_timeout = 90\n")
        port = free_port()
        args = ["server", "--config", str(config), "--port", str(port), *h]
        server = _spawn(args, tmp_path / "server.out", env)
        processes.append(server)
        _wait_listening(port, server)
        silent = _silent_supernode(f"127.0.0.1:{port}", tmp_path / "silent.log", env)

        def client(i: int, log: str):
            args = ["client", "--key", str(keys[i]), "--superlink", f"127.0.0.1:{port}"]
            return _spawn([*args, "--partition", f"{i}/2", *h], tmp_path / log, env)

        clients = [client(0, "client0.out"), client(1, "client1.out")]
        processes += clients
        rounds = Rounds(home)
        rounds.wait_round(3, server)
        clients[1].send_signal(signal.SIGTERM)  # the node restarts: a new SuperNode, a new Flower node id
        clients[1].wait(timeout=60)
        processes.append(client(1, "client1-restarted.out"))
        server.wait(timeout=300)
        rounds.poll()
        assert server.returncode == 0, (tmp_path / "server.out").read_text()
    finally:
        if silent is not None:
            silent.stop()
        stop_commands(processes, h, env)

    # The silent node was connected and challenged (in round 1 or 2), and never answered.
    silent_log = (tmp_path / "silent.log").read_text()
    assert "Receiving: train message" in silent_log and "Sent successfully" not in silent_log, silent_log
    # The join gate held round 1 until the clients' first answers plus a grace, and rounds 2-3 not at all.
    took = {r: round(rounds.arrived[r] - rounds.arrived[r - 1], 1) for r in range(1, 6)}
    joined = {r: rounds.reports[r].seconds["join"] for r in range(1, 6)}
    assert joined[1] < 30.0 and joined[2] < 5.0 and joined[3] < 5.0, (joined, took)
    assert took[2] < 60.0 and took[3] < 60.0, (joined, took)
    # The restarted client proved its address under a new node id, took it over and trained again.
    verified = {n.node_id for n in rounds.notices if n.verdict == "verified" and n.address == addresses[1]}
    assert len(verified) == 2, rounds.notices
    assert any("replaced by node" in n.reason for n in rounds.notices if n.address == addresses[1])
    assert addresses[1] in rounds.reports[5].participants, rounds.reports[5]


def _wait_listening(port: int, server, timeout: float = 60.0) -> None:
    """Until the server's SuperLink accepts connections on 127.0.0.1:`port`."""
    import socket

    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the SuperLink did not listen on port {port}")
