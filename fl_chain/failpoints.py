"""Named crash points for fault-injection tests: `FLCHAIN_FAILPOINT=NAME@ROUND` makes the process that
reaches that point in that round SIGKILL itself, so a test can stop the coordinator at an exact moment
(between storing a blob and committing it, between a commit and the next round) that killing it from
outside could only hit by luck. Without the variable every point is a no-op."""

from __future__ import annotations

import os
import signal

FAILPOINT_ENV = "FLCHAIN_FAILPOINT"
POINTS = ("after-store", "after-commit")


def failpoint(name: str, round_number: int) -> None:
    """Die here, as a machine dies (SIGKILL, no clean-up), if FLCHAIN_FAILPOINT is `name@round_number`."""
    if os.environ.get(FAILPOINT_ENV) == f"{name}@{round_number}":
        os.kill(os.getpid(), signal.SIGKILL)
