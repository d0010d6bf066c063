"""The ledger off the critical path: round r's commit (store, transaction, receipt, report) runs in one
background thread while Flower samples and trains round r+1. The nodes check round r+1's parent against
the chain before they reply, not before they start (node/chain_mod.py), so a commit that lands while they
train costs nothing.

Order is kept: there is at most one commit in flight; `settle` waits for it and re-raises its failure,
and the round's aggregation calls `settle` before it uses any reply, so round r+1 is never committed
before round r is mined, and a failed commit of round r stops the run before round r+1's result is used.
What the ledger records is the same as with the commit on the critical path (tests/test_commit_overlap.py)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class CommitPipeline:
    """At most one commit in flight, run in a background thread."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    @property
    def pending(self) -> bool:
        """Whether a commit was submitted and not yet settled."""
        return self._pending is not None

    def submit(self, commit: Callable[[], None]) -> None:
        """Run `commit` in the background, after settling the previous one."""
        self.settle()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flchain-commit")
        self._pending = self._executor.submit(commit)

    def settle(self) -> None:
        """Wait for the commit in flight, if any; re-raise its failure (the run must stop there)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Settle, then stop the thread; the commit's failure is raised after the thread is stopped."""
        try:
            self.settle()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
