"""The watchdog: whatever a flchain command starts dies with it, even when the command is SIGKILLed.

A `finally` block stops a command's chain node and Flower processes on errors and Ctrl-C, but SIGKILL
(the OOM killer, `kill -9`, a lost terminal session) runs no code. So the first process a command starts
is this watchdog, a small separate process holding the read end of a pipe whose write end only the
command holds. The command tells it each process (tree) it starts and stops; when the pipe reaches EOF
(the kernel closes it when the command dies, however it dies) or the watchdog's parent changes, the
watchdog stops every process still registered, together with the descendants it last saw (Flower's
SuperExec runs in a session of its own and its app processes are orphaned once the SuperNode dies, so
they are found from a snapshot of the tree taken while everything was alive).

Protocol (one line per message on the watchdog's stdin): `watch PID`, `forget PID`, or `exit` (the
command is exiting normally: stop what is still registered now). A PID is recorded
with its creation time, so a PID reused after its process ended is never signalled.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading

import psutil

from fl_chain.proctree import pinned, process_tree, stop_processes

SNAPSHOT_INTERVAL = 0.5  # seconds between snapshots of the watched trees


SECRET_NAMES = ("FLCHAIN_KEY_PASSWORD", "FLCHAIN_NODE_KEY")  # never handed to the watchdog process


class Watchdog:
    """The command-side handle: starts the watchdog process once and tells it what to watch."""

    _instance: Watchdog | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fl_chain.watchdog", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal must not stop it before the command cleans up
            env={k: v for k, v in os.environ.items() if k not in SECRET_NAMES},  # it needs no secret
        )
        atexit.register(self.close)

    @classmethod
    def get(cls) -> Watchdog:
        """The watchdog of this process, started on first use."""
        with cls._lock:
            if cls._instance is None or cls._instance._proc.poll() is not None:
                cls._instance = Watchdog()
            return cls._instance

    def watch(self, pid: int) -> None:
        """Stop `pid` and its descendants if this process dies before calling `forget(pid)`."""
        self._send(f"watch {pid}")

    def forget(self, pid: int) -> None:
        """`pid` was stopped (or is meant to outlive this process)."""
        self._send(f"forget {pid}")

    def close(self) -> None:
        """Normal exit: whatever is still registered is stopped, then the watchdog exits."""
        self._send("exit")
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=15)

    def _send(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()


def watch(pid: int) -> None:
    """Register `pid` with this process's watchdog (see the module docstring)."""
    Watchdog.get().watch(pid)


def forget(pid: int) -> None:
    """Unregister `pid` (it was stopped, or is detached on purpose)."""
    if Watchdog._instance is not None:
        Watchdog._instance.forget(pid)


def run(parent: int) -> None:
    """The watchdog's loop (in its own process): read messages until the parent is gone, then stop
    everything still registered."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    snapshots: dict[int, list[psutil.Process]] = {}  # watched PID -> its tree when last seen alive
    pending = b""
    stdin = sys.stdin.buffer
    while True:
        ready, _, _ = select.select([stdin], [], [], SNAPSHOT_INTERVAL)
        if ready:
            chunk = os.read(stdin.fileno(), 4096)
            if not chunk:
                break  # EOF: the parent exited or died
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                verb, _, value = line.decode(errors="replace").partition(" ")
                if not value.strip().isdigit():
                    continue
                pid = int(value)
                if verb == "watch" and (proc := pinned(pid)) is not None:
                    snapshots[pid] = [proc]
                elif verb == "forget":
                    snapshots.pop(pid, None)
            if any(line.strip() == b"exit" for line in lines):
                break  # the command is exiting normally (a forked child may still hold the pipe open)
        if os.getppid() != parent:
            break  # reparented: the parent is gone even if another process holds the pipe open
        for pid, tree in snapshots.items():
            now = process_tree(tree[0])
            if now:
                snapshots[pid] = now  # a tree whose root already ended keeps its last snapshot
    doomed = {p.pid: p for tree in snapshots.values() for p in [*tree, *process_tree(tree[0])]}
    stop_processes(list(doomed.values()))


if __name__ == "__main__":
    run(int(sys.argv[1]))
