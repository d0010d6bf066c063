"""Faults on real processes (Deployment Engine on loopback, anvil): nodes die, the chain node restarts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from fl_chain.chain.setup.localnode import free_port
from fl_chain.wire.report import read_reports
from tests.test_e2e_deployment import (
    PASSWORD,
    _processes_with,
    _run,
    _spawn,
    processes_left,
    registered_keys,
    stop_commands,
)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _kill_all(marker: str) -> None:
    """SIGKILL every process carrying `marker` at once: a machine that is gone says no goodbye."""
    for pid in _pids_with(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids_with(marker: str) -> list[int]:
    return [int(line.split(":")[0]) for line in _processes_with(marker)]


def test_node_deaths_mid_run(tmp_path: Path) -> None:
    """Three nodes. After round 1 node 2's machine dies (all its processes SIGKILLed at once): round 2
    ends at the deadline derived from round 1, not at the 120 s round_timeout, records it as missed, and
    later rounds do not sample it again. After round 2 only node 1's `flchain client` is SIGKILLed: its
    watchdog takes the SuperNode and app processes with it, and the run finishes with node 0."""
    home = tmp_path / "home"
    marker = f"flchain-fault-{uuid.uuid4()}"
    env = {**os.environ, "FLCHAIN_KEY_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["FLCHAIN_TEST_MARKER"] = marker
    h = ["--home", str(home)]
    _run("chain", "up", "--detach", "--port", str(free_port()), *h, env=env)
    clients: list[subprocess.Popen] = []
    server = None
    try:
        keys = registered_keys(tmp_path, 3, h, env)
        addresses = ["0x" + json.loads(k.read_text())["address"].lower() for k in keys]
        config = tmp_path / "run.toml"
        config.write_text(
            "[federation]\nrounds = 3\nmin_nodes = 1\nstart_nodes = 3\nround_timeout = 120.0\n"
            "round_timeout_floor = 20.0\nround_timeout_factor = 2.0\n\n[task]\nlocal_epochs = 1\n"
        )
        port = free_port()
        server_log = tmp_path / "server.out"
        node_markers = [f"{marker}-node{i}" for i in range(3)]
        client_logs = [tmp_path / f"client{i}.out" for i in range(3)]
        for i, key in enumerate(keys):
            args = ["client", "--key", str(key), "--superlink", f"127.0.0.1:{port}", "--partition", f"{i}/3"]
            clients.append(
                _spawn([*args, *h], client_logs[i], {**env, "FLCHAIN_TEST_MARKER": node_markers[i]})
            )
        # Round 1 gathers all three (start_nodes; a SuperNode retrying with backoff may connect seconds
        # after the others); later rounds go on with whoever is left (min_nodes = 1).
        _wait_for(lambda: all("-> SuperLink" in log.read_text() for log in client_logs), 120, "the clients")
        server = _spawn(["server", "--config", str(config), "--port", str(port), *h], server_log, env)

        _wait_for(lambda: "round 1: accuracy" in server_log.read_text(), 300, "round 1")
        assert len(_processes_with(node_markers[2])) >= 2  # flchain client, its SuperNode (and more)
        _kill_all(node_markers[2])
        clients[2].wait()

        _wait_for(lambda: "round 2: accuracy" in server_log.read_text(), 300, "round 2")
        assert len(_processes_with(node_markers[1])) >= 2
        clients[1].send_signal(signal.SIGKILL)  # only the command: what it started must follow
        clients[1].wait()
        _wait_for(lambda: _processes_with(node_markers[1]) == [], 20, "node 1's SuperNode and apps to stop")

        server.wait(timeout=400)
        output = server_log.read_text()
        assert server.returncode == 0, output
        reports = {r.round: r for r in read_reports(next((home / "runs").glob("*/rounds.jsonl")))}
        assert sorted(reports) == [0, 1, 2, 3]
        credited = {n: {a.lower() for a in r.participants} for n, r in reports.items()}
        assert credited[1] == set(addresses)
        assert [a.lower() for a in reports[2].missed] == [addresses[2]], reports[2]
        assert credited[2] == set(addresses[:2])
        assert reports[2].seconds["train"] < 120  # the derived deadline, not the round_timeout, ended it
        for later in (3,):  # node 2 is not sampled again: neither missed again nor credited
            assert addresses[2] not in credited[later] and addresses[2] not in {
                a.lower() for a in reports[later].missed
            }
        assert credited[3] == {addresses[0]}
    finally:
        stop_commands([*clients, server], h, env)
    assert processes_left(marker) == []


def test_a_commit_waits_out_a_chain_restart(tmp_path: Path) -> None:
    """The coordinator's commit meets a stopped anvil (state kept in a file): it reports the wait, waits
    with backoff, and lands the round once when the node is back; the next round follows on its parent."""
    from fl_chain.chain import ledger
    from fl_chain.chain.setup import bootstrap
    from fl_chain.chain.setup.localnode import start_chain
    from fl_chain.coordinator.committer import RoundCommitter
    from fl_chain.proctree import stop_pid
    from fl_chain.store import ModelStore

    state, port = tmp_path / "state.json", free_port()
    first = start_chain("anvil", port, tmp_path / "anvil.log", state=state)
    local = bootstrap.deploy_local(first)
    said: list[str] = []
    local.client.on_outage(said.append)
    committer = RoundCommitter.new_task(
        local.client, local.coordinator, ModelStore(tmp_path / "store"), b"\x01" * 32
    )
    arrays = {"w": np.zeros(3, dtype=np.float32)}
    committer.commit(0, arrays)
    stop_pid(first.pid)  # SIGTERM: anvil writes its state file
    restarted: list = []
    back = threading.Timer(
        3.0, lambda: restarted.append(start_chain("anvil", port, tmp_path / "a2.log", state=state))
    )
    back.start()
    try:
        committer.commit(1, {"w": np.ones(3, dtype=np.float32)})  # sent into the gap
        committer.commit(2, {"w": np.full(3, 2, dtype=np.float32)})
        assert ledger.round_count(local.client, committer.task) == 3
        assert said[0].startswith(f"the chain node at http://127.0.0.1:{port} is not answering")
        assert "answers again after" in said[1] and len(said) == 2
    finally:
        back.join()
        for process in restarted:
            stop_pid(process.pid)
