"""RoundCommitter: the coordinator's write path for one task. Stores a model in the content-addressed
store, lets the task's ledger mode publish what goes beside it (coordinator/round_writers.py), commits
the round to the ModelLedger, optionally waits for the validator quorum, and reports which nodes were
suspended. It alone holds the task's parent hash, so rounds chain correctly whatever calls it. The mode
is the one the task recorded on-chain when it was created."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import WARNING
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.supercore import log
from web3.types import TxReceipt

from fl_chain.chain import ledger, quorum
from fl_chain.chain.client import ChainClient
from fl_chain.coordinator.round_writers import RoundInput, writer_for
from fl_chain.coordinator.verified_round import VerifiedRound
from fl_chain.errors import FlchainError
from fl_chain.failpoints import failpoint
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.task_rules import TaskRules, rules_document_name
from fl_chain.store import BlobStore


@dataclass
class Commit:
    """What one commit produced."""

    round: int
    model_hash: bytes
    uri: str
    receipt: TxReceipt
    suspended: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    updates_root: bytes | None = None  # a verified round's commitment to its node-signed updates
    published_bytes: int = 0  # update blobs and manifest a verified round stored beside the model
    outcomes_root: bytes | None = None  # a commitment-mode round's root of its outcome leaves
    checkpoint: int = 0  # the reputation checkpoint proposed after this round (commitment mode), if any

    @property
    def tx(self) -> str:
        """Transaction hash (0x hex)."""
        return "0x" + bytes(self.receipt["transactionHash"]).hex()

    @property
    def gas(self) -> int:
        """Gas the commit used."""
        return int(self.receipt["gasUsed"])

    def report_fields(self) -> dict[str, str | int | list[str]]:
        """What a round report says about the commit (wire/report.py's field names)."""
        return {
            "model_hash": "0x" + self.model_hash.hex(),
            "uri": self.uri,
            "tx": self.tx,
            "gas": self.gas,
            "suspended": list(self.suspended),
            "updates_root": "0x" + self.updates_root.hex() if self.updates_root else "",
            "published_bytes": self.published_bytes,
            "outcomes_root": "0x" + self.outcomes_root.hex() if self.outcomes_root else "",
            "checkpoint": self.checkpoint,
        }


class RoundCommitter:
    """Commits the rounds of one task, in order, from one coordinator account."""

    def __init__(
        self,
        client: ChainClient,
        coordinator: LocalAccount,
        task: int,
        store: BlobStore,
        parent_hash: bytes = ledger.ZERO_HASH,
        wait_finalized: float = 0.0,
        mode: str | LedgerMode | None = None,
        checkpoint_every: int = 1,
    ) -> None:
        """The task's ledger mode is read from the chain; `mode` (the config's ledger.mode), if given,
        must match it. Commitment mode checkpoints the folded reputation every `checkpoint_every` rounds."""
        self.client = client
        self.coordinator = coordinator
        self.task = task
        self.store = store
        self.parent_hash = parent_hash
        self.parent_round: int | None = None  # the round parent_hash belongs to, once known
        self.rebased: tuple[int, dict[str, np.ndarray]] | None = None  # rebase past a disputed round
        self.wait_finalized = wait_finalized
        self.mode = ledger.task_mode(client, task)
        if mode is not None and _as_mode(mode) is not self.mode:
            raise FlchainError(
                f"task {task} was created in {self.mode.label} mode; this run's ledger.mode is "
                f"{_as_mode(mode).label} (a task keeps its mode for its whole life)"
            )
        self.writer = writer_for(self.mode, client, coordinator, task, store, checkpoint_every)

    @classmethod
    def new_task(
        cls,
        client: ChainClient,
        coordinator: LocalAccount,
        store: BlobStore,
        config_hash: bytes,
        mode: str | LedgerMode = LedgerMode.PLAIN,
        rules: TaskRules | None = None,
        **kwargs: Any,
    ) -> RoundCommitter:
        """Create a task on-chain in `mode` (blobs published under the store's base URI) and a committer
        for it. `rules` (required for a verified task) are published in the store, by their hash, before
        the task records that hash as its rulesHash."""
        rules_hash = ledger.ZERO_HASH
        if rules is not None:
            rules_hash = rules.rules_hash()
            store.put_document(rules_document_name(rules_hash), rules.to_json())
        elif _as_mode(mode) is LedgerMode.VERIFIED:
            raise FlchainError("a verified task needs its rules (scoring, claim cap, clip and step ratios)")
        task = ledger.create_task(
            client, coordinator, config_hash, store.base_uri, _as_mode(mode), rules_hash
        )
        return cls(client, coordinator, task, store, **kwargs)

    def check_rules(self, rules: TaskRules) -> None:
        """A one-line error unless `rules` are the ones the task recorded on-chain (a task without
        recorded rules accepts any): a run must not derive a task's rounds with other rules than the
        validators hold it to."""
        recorded = ledger.task_record(self.client, self.task).rules_hash
        if recorded not in (ledger.ZERO_HASH, rules.rules_hash()):
            raise FlchainError(
                f"task {self.task} was created with rules 0x{recorded.hex()}; this run's rules "
                f"({rules.describe()}) hash to 0x{rules.rules_hash().hex()} (a task keeps its rules)"
            )

    def commit(
        self,
        round_number: int,
        arrays: Mapping[str, np.ndarray],
        scores: Mapping[str, int] | None = None,
        missed: Sequence[str] = (),
        penalized: Sequence[str] = (),
        verified: VerifiedRound | None = None,
        digest: bytes | None = None,
    ) -> Commit:
        """Store the model, let the mode's writer publish what goes beside it (a verified round's updates
        and manifest, a commitment round's outcome leaves), commit the round, fold and checkpoint (in
        commitment mode), wait for finality if configured; the parent moves on. `digest`: the model's
        hash if the caller already computed it (a verified round's manifest names it): not hashed again."""
        seconds: dict[str, float] = {}
        started, cpu = time.monotonic(), time.thread_time()
        if digest is None:
            digest = hash_arrays(arrays)
            seconds["model_hash"] = time.monotonic() - started
            seconds["model_hash_cpu"] = time.thread_time() - cpu
        started = time.monotonic()
        digest, uri = self.store.put_arrays(arrays, digest)
        rnd = RoundInput(
            round_number, self.parent_hash, digest, dict(scores or {}), missed, penalized, verified
        )
        prepared = self.writer.prepare(rnd)
        seconds["store"] = time.monotonic() - started
        failpoint("after-store", round_number)
        started = time.monotonic()
        missed, penalized = self.writer.charges(rnd)  # only what the ledger accepts and validators check
        receipt = ledger.commit_round(
            self.client,
            self.coordinator,
            self.task,
            round_number,
            digest,
            "",
            self.parent_hash,
            dict(scores or {}),
            missed,
            penalized,
            **prepared.commit_args,
        )
        self.parent_hash, self.parent_round, self.rebased = digest, round_number, None
        seconds["commit"] = time.monotonic() - started
        commit = Commit(round_number, digest, uri, receipt, [], seconds, prepared.updates_root)
        commit.published_bytes = prepared.published_bytes
        commit.outcomes_root = prepared.outcomes.root() if prepared.outcomes is not None else None
        commit.suspended = self.writer.suspended_by(receipt, prepared)
        self._checkpoint(commit)
        self._finalize(commit)
        failpoint("after-commit", round_number)
        return commit

    def _checkpoint(self, commit: Commit) -> None:
        """Propose a reputation checkpoint after the round if its mode has one due."""
        started = time.monotonic()
        proposed = self.writer.checkpoint(commit.round)
        if proposed is not None:
            commit.checkpoint, size = proposed
            commit.published_bytes += size
            commit.seconds["checkpoint"] = time.monotonic() - started

    def rebase_if_disputed(self) -> tuple[int, dict[str, np.ndarray]] | None:
        """If the validators disputed the round the next one would build on, rebase the task on its
        newest finalized round (ModelLedger.rebase) and return that round and its model, to train from
        instead; None if the parent stands. One chain read per round when nothing is disputed."""
        if self.rebased is not None:
            return self.rebased
        if self.parent_round is None or not quorum.is_disputed(self.client, self.task, self.parent_round):
            return None
        finalized = quorum.latest_finalized(self.client, self.task)
        ledger.rebase(self.client, self.coordinator, self.task, finalized)
        record, arrays = ledger.load_model(self.client, self.task, finalized)
        self.parent_hash, self.parent_round = record.model_hash, finalized
        self.rebased = (finalized, arrays)
        return self.rebased

    def _finalize(self, commit: Commit) -> None:
        """Wait for the validators' finality if configured (a disputed round does not stop the run: the
        next round rebases past it), then apply what became binding."""
        if self.wait_finalized > 0:
            started = time.monotonic()
            try:
                quorum.wait_finalized(self.client, self.task, commit.round, self.wait_finalized)
            except FlchainError:
                if not quorum.is_disputed(self.client, self.task, commit.round):
                    raise
                log(WARNING, "round %d was disputed by the validators: the next round rebases", commit.round)
            if commit.checkpoint:
                self.writer.wait_checkpoint(commit.checkpoint, self.wait_finalized)
            commit.seconds["finalize"] = time.monotonic() - started
        # In commitment mode the fold already reported a node the finalized checkpoint now suspends
        # in the registry: one suspension, listed once.
        listed = {a.lower() for a in commit.suspended}
        commit.suspended += [a for a in self.writer.after_finality() if a.lower() not in listed]

    def reputations(self, addresses: Iterable[str]) -> dict[str, int]:
        """Reputation (fixed point) of each address: the fold's in commitment mode, else the chain's."""
        return self.writer.reputations(addresses)

    def held_back(self) -> set[str]:
        """Nodes not to sample although the registry lists them Active: in commitment mode, those the
        fold suspended before a checkpoint made it binding (lowercase)."""
        return self.writer.held_back()


def _as_mode(mode: str | LedgerMode) -> LedgerMode:
    return mode if isinstance(mode, LedgerMode) else LedgerMode.named(mode)
