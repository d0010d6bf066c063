"""Process and machine facts through psutil, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest

from fl_chain.proctree import (
    cmdline,
    descendants,
    detect_cores,
    detect_memory_mb,
    group_alive,
    pid_alive,
    stop_pid,
    stop_pids,
    stop_tree,
)

# Starts a child that starts a grandchild (`depth` levels); all sleep with `tag` on their command line.
TREE = """
import subprocess, sys, time
_, depth, tag, code = sys.argv
if int(depth):
    subprocess.Popen([sys.executable, "-c", code, str(int(depth) - 1), tag, code])
time.sleep(120)
"""


def _spawn_tree(tag: str, depth: int = 2, new_session: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-c", TREE, str(depth), tag, TREE]
    return subprocess.Popen(cmd, start_new_session=new_session)


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_descendants_of_a_real_tree_are_found_and_stopped() -> None:
    tag = f"proctree-{uuid.uuid4()}"
    root = _spawn_tree(tag)
    try:
        _wait_for(lambda: len(descendants(root.pid)) == 2)
        tree = descendants(root.pid)
        assert all(tag in cmdline(pid) for pid in [root.pid, *tree])  # full command lines
        assert all(pid_alive(pid) for pid in tree)
        stop_pids([root.pid, *tree], timeout=5.0)
        assert not any(pid_alive(pid) for pid in [root.pid, *tree])
        assert descendants(root.pid) == [] and cmdline(root.pid) == ""
    finally:
        stop_pids([root.pid, *descendants(root.pid)], timeout=1.0)


def test_a_finished_child_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    _wait_for(lambda: not pid_alive(child.pid))  # reaped, not reported as a zombie


def test_stop_pid_kills_what_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True)"
    code += "; time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()  # the handler is installed
    started = time.monotonic()
    stop_pid(proc.pid, timeout=0.5)
    assert not pid_alive(proc.pid)
    assert time.monotonic() - started < 5.0


@pytest.mark.skipif(not hasattr(os, "getpgid"), reason="process groups are POSIX")
def test_group_alive_follows_the_group() -> None:
    leader = _spawn_tree(f"proctree-{uuid.uuid4()}", depth=1, new_session=True)
    _wait_for(lambda: len(descendants(leader.pid)) == 1)
    assert group_alive(leader.pid)
    stop_pids([leader.pid, *descendants(leader.pid)])
    assert not group_alive(leader.pid)


@pytest.mark.skipif(not hasattr(os, "getpgid"), reason="process groups are POSIX")
def test_stop_tree_takes_the_group_and_a_descendant_that_left_it() -> None:
    """As Managed.stop uses it: a group leader, its child, and a grandchild in a session of its own (as
    Flower's SuperExec) all go, though SIGTERM is ignored by the leader."""
    tag = f"proctree-{uuid.uuid4()}"
    code = "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    code += f"; subprocess.Popen(['setsid', 'sleep', '302']); time.sleep(120) # {tag}"
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        _wait_for(lambda: len(descendants(leader.pid)) == 1)
        tree = [leader.pid, *descendants(leader.pid)]
        started = time.monotonic()
        stop_tree(leader.pid, timeout=0.5, kill_timeout=5.0, group=True)
        assert not any(pid_alive(pid) for pid in tree) and not group_alive(leader.pid)
        assert time.monotonic() - started < 5.0
    finally:
        stop_pids([leader.pid, *descendants(leader.pid)], timeout=1.0)


def test_machine_facts() -> None:
    assert detect_cores() >= 1
    assert detect_memory_mb() > 0


# A command that starts a non-detached chain node and a Flower-like process tree (a child in its own
# process group with a grandchild in a session of its own, as Flower's SuperExec is), then waits.
COMMAND = """
import sys, time
from pathlib import Path
from fl_chain.chain.setup.localnode import free_port, start_chain
from fl_chain.runners.processes import spawn
tag, log = sys.argv[1], Path(sys.argv[2])
chain = start_chain("anvil", free_port(), log / "anvil.log")
code = "import subprocess, time; subprocess.Popen(['setsid', 'sleep', '301']); time.sleep(300)"
spawn("tree", [sys.executable, "-c", code, tag], log / "tree.log", {"FLCHAIN_TEST_MARKER": tag})
print(chain.pid, flush=True)
time.sleep(300)
"""


def _pids_with(tag: str) -> list[int]:
    """Live processes whose command line or environment carries `tag` (read from /proc, never cut)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                command = fh.read()
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{entry}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (tag.encode() in command or tag.encode() in environ):
            found.append(int(entry))
    return found


def test_sigkill_of_a_command_takes_what_it_started_with_it(tmp_path) -> None:
    tag = f"flchain-watchdog-{uuid.uuid4()}"
    parent = subprocess.Popen(
        [sys.executable, "-c", COMMAND, tag, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "FLCHAIN_TEST_MARKER": tag},
    )
    try:
        chain_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 20
        while len(_pids_with(tag)) < 4 and time.monotonic() < deadline:  # parent, anvil, child, grandchild
            time.sleep(0.1)
        started = set(_pids_with(tag))
        assert chain_pid in started and len(started) >= 4, started
        time.sleep(1.0)  # the watchdog snapshots the trees twice a second
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while _pids_with(tag) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _pids_with(tag) == []
    finally:
        if parent.poll() is None:
            parent.kill()
        stop_pids(_pids_with(tag), timeout=2)
