"""Portable process and machine facts, built on psutil: liveness, command lines, process trees, stopping
by PID, CPU cores and memory. Nothing here reads Linux-only files, so it works wherever psutil does
(Linux, macOS, Windows); process groups exist only on POSIX."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable

import psutil

_POLL = 0.05


def _reap(pid: int) -> bool:
    """Reap `pid` if it is a finished child of this process; True if it was."""
    if not hasattr(os, "WNOHANG"):  # Windows: no zombies to reap
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        return False
    return waited == pid


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists and is not a zombie (our own finished children are reaped
    on the way, so a stopped child reads as gone)."""
    if pid <= 0 or _reap(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # includes psutil.ZombieProcess
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by someone else


def stop_pids(pids: Iterable[int], timeout: float = 5.0) -> None:
    """Stop processes by PID: SIGTERM (TerminateProcess on Windows) to all, then SIGKILL to those still
    alive after `timeout` seconds; returns once all are gone or another `timeout` has passed."""
    procs: list[psutil.Process] = []
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.append(psutil.Process(pid))
    for force in (False, True):
        for proc in procs:
            # psutil checks the PID still names the same process (creation time) before signalling it.
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if force:
                    proc.kill()
                else:
                    proc.terminate()
        deadline = time.monotonic() + timeout
        while True:
            procs = [proc for proc in procs if pid_alive(proc.pid)]
            if not procs or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        if not procs:
            return


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """Stop a process by PID: SIGTERM, then SIGKILL after `timeout` seconds."""
    stop_pids([pid], timeout)


def cmdline(pid: int) -> str:
    """The full command line of a process (arguments joined by spaces), or '' if it is gone or hidden."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def descendants(root: int) -> list[int]:
    """PIDs of all live descendants of `root`, each parent before its children ([] if `root` is gone)."""
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child.pid for child in children if pid_alive(child.pid)]


def group_alive(pgid: int) -> bool:
    """True if any live, non-zombie process belongs to process group `pgid` (POSIX). Where there are no
    process groups (Windows), whether the process `pgid` itself is alive."""
    if not hasattr(os, "getpgid"):
        return pid_alive(pgid)
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


def detect_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one, else all cores)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def detect_memory_mb() -> int:
    """Total physical memory in MiB (0 if the OS does not tell)."""
    try:
        return int(psutil.virtual_memory().total) // 2**20
    except (OSError, RuntimeError, psutil.Error):
        return 0
