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


def test_machine_facts() -> None:
    assert detect_cores() >= 1
    assert detect_memory_mb() > 0
