"""RoundCommitter: the coordinator's write path for one task. Stores a model in the content-addressed
store, commits the round (hash, parent, scores, missed, penalized) to the ModelLedger, optionally waits
for the validator quorum, and reports which nodes the Reputation contract suspended. It alone holds the
task's parent hash, so rounds chain correctly whatever calls it. In commitment mode (fl/commitment.py)
the round commits only the root of its published outcome leaves, and reputation is folded off-chain and
checkpointed."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fl_chain.chain import checkpoints, ledger, quorum, reputation
from fl_chain.chain.client import ChainClient
from fl_chain.coordinator.commitment import CommitmentBook
from fl_chain.coordinator.verified_round import VerifiedRound
from fl_chain.failpoints import failpoint
from fl_chain.protocol.outcomes import RoundOutcomes
from fl_chain.store import ModelStore, canonical_bytes


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
        """What a round report says about the commit (fl/report.py's field names)."""
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
        store: ModelStore,
        parent_hash: bytes = ledger.ZERO_HASH,
        wait_finalized: float = 0.0,
        mode: str = "plain",
        checkpoint_every: int = 1,
    ) -> None:
        """`mode` is the config's ledger.mode; "commitment" commits outcome roots and checkpoints the
        folded reputation every `checkpoint_every` rounds."""
        self.client = client
        self.coordinator = coordinator
        self.task = task
        self.store = store
        self.parent_hash = parent_hash
        self.wait_finalized = wait_finalized
        self.commitment = (
            CommitmentBook(client, coordinator, task, store, checkpoint_every)
            if mode == "commitment"
            else None
        )

    @classmethod
    def new_task(
        cls, client: ChainClient, coordinator: LocalAccount, store: ModelStore, config_hash: bytes, **kwargs
    ) -> RoundCommitter:
        """Create a task on-chain (blobs published under the store's base URI) and a committer for it."""
        task = ledger.create_task(client, coordinator, config_hash, store.base_uri)
        return cls(client, coordinator, task, store, **kwargs)

    def commit(
        self,
        round_number: int,
        arrays: Mapping[str, np.ndarray],
        scores: Mapping[str, int] | None = None,
        missed: Sequence[str] = (),
        penalized: Sequence[str] = (),
        verified: VerifiedRound | None = None,
    ) -> Commit:
        """Store the model, commit the round, wait for finality if configured; the parent moves on. With
        `verified`, the included updates and the manifest are stored first and the round commits their
        root (validators re-derive the model from them). In commitment mode the outcome leaves are
        stored and their root committed, the round is folded in and a checkpoint proposed when due."""
        seconds: dict[str, float] = {}
        started = time.monotonic()
        digest, uri = self.store.put(canonical_bytes(arrays))
        root = verified.root if verified is not None else None
        outcomes = None
        if self.commitment is not None:
            outcomes = self.commitment.outcomes(
                round_number, self.parent_hash, digest, scores or {}, missed, penalized
            )
        published = self._publish(verified, outcomes)
        seconds["store"] = time.monotonic() - started
        failpoint("after-store", round_number)
        started = time.monotonic()
        receipt = ledger.commit_round(
            self.client,
            self.coordinator,
            self.task,
            round_number,
            digest,
            "",
            self.parent_hash,
            dict(scores or {}),
            list(missed),
            list(penalized),
            updates_root=root,
            outcomes=(outcomes.root(), len(outcomes.outcomes)) if outcomes is not None else None,
        )
        self.parent_hash = digest
        seconds["commit"] = time.monotonic() - started
        commit = Commit(round_number, digest, uri, receipt, [], seconds, root, published)
        if outcomes is not None:
            self._checkpoint(commit, outcomes)
        else:
            events = self.client.events(self.client.reputation, "AutoSuspended", receipt)
            commit.suspended = [e["node"] for e in events]
        if self.wait_finalized > 0:
            started = time.monotonic()
            quorum.wait_finalized(self.client, self.task, round_number, self.wait_finalized)
            if commit.checkpoint:
                checkpoints.wait_finalized(self.client, commit.checkpoint, self.wait_finalized)
            seconds["finalize"] = time.monotonic() - started
        if self.commitment is not None:
            self.commitment.apply_finalized()
        failpoint("after-commit", round_number)
        return commit

    def _publish(self, verified: VerifiedRound | None, outcomes: RoundOutcomes | None) -> int:
        """Store what a verified round (update blobs, manifest) or a commitment-mode round (outcome
        leaves) publishes beside the model; the bytes stored."""
        published = 0
        if verified is not None:
            for blob in verified.blobs.values():
                self.store.put_update(blob)
                published += len(blob)
            document = verified.manifest.to_json()
            self.store.put_manifest(verified.manifest.name(), document)
            published += len(document)
        if outcomes is not None:
            document = outcomes.to_json()
            self.store.put_manifest(outcomes.name(), document)
            published += len(document)
        return published

    def _checkpoint(self, commit: Commit, outcomes: RoundOutcomes) -> None:
        """Fold a commitment-mode round in and propose a checkpoint if one is due."""
        commit.outcomes_root = outcomes.root()
        commit.suspended = self.commitment.record(outcomes)
        started = time.monotonic()
        proposed = self.commitment.propose_if_due(outcomes.round)
        if proposed is not None:
            commit.checkpoint, size = proposed
            commit.published_bytes += size
            commit.seconds["checkpoint"] = time.monotonic() - started

    def reputations(self, addresses: Iterable[str]) -> dict[str, int]:
        """Reputation (fixed point) of each address: the fold's in commitment mode, else the chain's."""
        if self.commitment is not None:
            return self.commitment.reputations(addresses)
        return reputation.reputations(self.client, addresses)
