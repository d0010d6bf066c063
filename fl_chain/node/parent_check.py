"""The node's check of the model it trains from against the chain, finished before it replies rather
than before it starts. The coordinator sends round r's commit while round r+1 trains
(coordinator/commit_pipeline.py), so the parent round may land on-chain while this node trains: the
received model is hashed in a background thread while the app trains (hashlib releases the GIL), and
after training the node waits, up to its `parent_wait` seconds, for the parent round's hash to appear.
A parent that never lands, or whose hash differs, is refused: the reply is an error and nothing is
signed. Imports neither web3 nor eth-account (a node's process serves one message)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from fl_chain.chain.node_reads import NodeReads
from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import hash_arrays, require_same_model

# How often a node asks whether the parent round has landed: soon at first (on a local chain a commit
# lands within tens of milliseconds, and a round of the Simulation Engine is not much longer), then less
# often, so a late commit on a public chain costs a few calls a second at most.
FIRST_POLL_SECONDS, MAX_POLL_SECONDS = 0.01, 0.25


@dataclass
class ParentCheck:
    """A received model's check against round `parent_round` of `task`, under way while the node trains."""

    task: int
    parent_round: int
    expected: bytes | None  # the parent's on-chain hash when the message arrived; None: not yet committed
    received: Future[bytes]  # the received model's hash, computed in the background

    @classmethod
    def start(
        cls, task: int, parent_round: int, expected: bytes | None, arrays: Mapping[str, np.ndarray]
    ) -> ParentCheck:
        """Begin hashing `arrays` in a background thread."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flchain-parent-hash")
        received = pool.submit(hash_arrays, arrays)
        pool.shutdown(wait=False)  # the thread ends with its one task
        return cls(task, parent_round, expected, received)

    def finish(self, reads: NodeReads, address: str, wait: float) -> None:
        """Wait for the parent round on-chain (up to `wait` seconds) and compare hashes; a one-line
        error if it never lands or differs."""
        expected = self.expected if self.expected is not None else self._wait_for_parent(reads, address, wait)
        require_same_model(expected, self.received.result(), self.task, self.parent_round)

    def _wait_for_parent(self, reads: NodeReads, address: str, wait: float) -> bytes:
        deadline, pause = time.monotonic() + wait, FIRST_POLL_SECONDS
        while True:
            model_hash = reads.round_view(address, self.task, self.parent_round).model_hash
            if model_hash is not None:
                return model_hash
            if time.monotonic() >= deadline:
                raise FlchainError(
                    f"round {self.parent_round} of task {self.task} is not committed on-chain "
                    f"(waited {wait:g} s after training): the model to train from was never committed"
                )
            time.sleep(pause)
            pause = min(2 * pause, MAX_POLL_SECONDS)
