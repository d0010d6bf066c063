"""A stop request survives a KeyboardInterrupt that Python dropped on the way (interrupts.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from fl_chain.cli_common import sigterm_as_interrupt
from fl_chain.interrupts import raise_if_stopping, stopping


def test_a_swallowed_sigterm_still_stops_the_next_tick() -> None:
    """The handler's exception lost (as in a `__del__`), the loop's next check raises it again; a new
    command starts without the old request, and a worker thread is never interrupted by it."""
    with sigterm_as_interrupt():
        assert not stopping()
        raise_if_stopping()  # nothing requested: no exception
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(2)  # the handler runs here
        except KeyboardInterrupt:
            pass  # what a `__del__` or a broad handler does to it
        assert stopping()
        with pytest.raises(KeyboardInterrupt):
            raise_if_stopping()
        raised: list[bool] = []

        def worker() -> None:
            try:
                raise_if_stopping()
                raised.append(False)
            except KeyboardInterrupt:
                raised.append(True)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert raised == [False]
    with sigterm_as_interrupt():
        assert not stopping()
