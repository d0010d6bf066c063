"""Portable process and machine facts, built on psutil: liveness, command lines, process trees, stopping
by PID, CPU cores and memory. Nothing here reads Linux-only files, so it works wherever psutil does
(Linux, macOS, Windows); process groups exist only on POSIX."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

import psutil

_POLL = 0.05


def _child_running(pid: int) -> bool | None:
    """For a child of this process, whether it still runs (a finished one is reaped on the way); None
    for any other process, or where the OS has no zombies (Windows). A multi-threaded child whose main
    thread has exited already reads as a zombie while its other threads still run (and hold its ports
    and files): only waitpid knows when it has ended."""
    if not hasattr(os, "WNOHANG"):
        return None
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        return None
    return waited != pid


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists and is not a zombie (our own finished children are reaped
    on the way, so a stopped child reads as gone)."""
    if pid <= 0:
        return False
    child = _child_running(pid)
    if child is not None:
        return child
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # includes psutil.ZombieProcess
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by someone else


def pinned(pid: int) -> psutil.Process | None:
    """A handle on the process `pid` names now, or None if there is none. psutil remembers its creation
    time, so signals sent through the handle never reach a later process that reuses the PID."""
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    """`root` and all its descendants, each parent before its children ([] if `root` is gone)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _running(proc: psutil.Process) -> bool:
    """True while this very process exists and is not a zombie (our own finished children are reaped)."""
    child = _child_running(proc.pid)
    if child is not None:
        return child
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by someone else


def _signal_group(pgid: int | None, force: bool) -> None:
    """SIGTERM (or SIGKILL) process group `pgid`, if one is given and the OS has process groups."""
    if pgid is None or not hasattr(os, "killpg"):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL if force else signal.SIGTERM)


def stop_processes(
    procs: Iterable[psutil.Process],
    timeout: float = 5.0,
    kill_timeout: float | None = None,
    group: int | None = None,
) -> None:
    """The one way flchain stops processes: SIGTERM (TerminateProcess on Windows) to each, SIGKILL to
    those still alive after `timeout` seconds; returns once all are gone or `kill_timeout` (default:
    `timeout`) more seconds have passed. With `group` (POSIX) that process group is signalled too and
    waited for, so a member started after the handles were taken goes as well."""
    live = [proc for proc in procs if _running(proc)]
    for force, wait in ((False, timeout), (True, timeout if kill_timeout is None else kill_timeout)):
        _signal_group(group, force)
        for proc in live:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if force:
                    proc.kill()
                else:
                    proc.terminate()
        deadline = time.monotonic() + wait
        while True:
            live = [proc for proc in live if _running(proc)]
            if not live and (group is None or not group_alive(group)):
                return
            if time.monotonic() >= deadline:
                break
            if force:
                _signal_group(group, force)  # a member forked after the first SIGKILL
            time.sleep(_POLL)


def stop_tree(
    root: int, timeout: float = 5.0, kill_timeout: float | None = None, group: bool = False
) -> None:
    """Stop `root` and every descendant by PID (stop_processes). The tree is read before the first
    signal: a descendant in a session of its own (Flower's SuperExec) is orphaned once its parent dies
    and could not be found afterwards. With `group`, `root` leads a process group (POSIX), stopped too."""
    proc = pinned(root)
    tree = process_tree(proc) if proc is not None else []
    stop_processes(tree, timeout, kill_timeout, group=root if group else None)


def stop_pids(pids: Iterable[int], timeout: float = 5.0) -> None:
    """Stop processes by PID (stop_processes): SIGTERM, SIGKILL after `timeout` seconds."""
    stop_processes([proc for pid in pids if pid_alive(pid) and (proc := pinned(pid)) is not None], timeout)


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
