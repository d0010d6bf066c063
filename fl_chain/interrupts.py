"""A stop request that cannot be lost: Ctrl-C and SIGTERM set it as well as raising KeyboardInterrupt.

The signal handler's KeyboardInterrupt is raised wherever the main thread happens to be; inside a
`__del__` or a weakref callback (a closing HTTP connection, say) Python prints it and drops it, and a
supervising loop would run on for ever. Long-running loops therefore also call `raise_if_stopping()`
on every tick: the flag set by the handler turns a lost interrupt into a KeyboardInterrupt there.
"""

from __future__ import annotations

import threading

_STOP = threading.Event()


def request_stop() -> None:
    """Record that the user (or a supervisor) asked this process to stop."""
    _STOP.set()


def clear_stop() -> None:
    """Forget an earlier stop request (a new long-running command starts)."""
    _STOP.clear()


def stopping() -> bool:
    """Whether a stop was requested."""
    return _STOP.is_set()


def raise_if_stopping() -> None:
    """In the main thread (where signals arrive and commands unwind), raise KeyboardInterrupt if a stop
    was requested, even if the signal's own exception was lost; other threads are left to their owner."""
    if _STOP.is_set() and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt
