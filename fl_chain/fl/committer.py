"""RoundCommitter: the coordinator's write path for one task. Stores a model in the content-addressed
store, commits the round (hash, parent, scores, missed, penalized) to the ModelLedger, optionally waits
for the validator quorum, and reports which nodes the Reputation contract suspended. It alone holds the
task's parent hash, so rounds chain correctly whatever calls it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fl_chain.chain import ledger, quorum
from fl_chain.chain.client import ChainClient
from fl_chain.failpoints import failpoint
from fl_chain.fl.verified_round import VerifiedRound
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
    ) -> None:
        self.client = client
        self.coordinator = coordinator
        self.task = task
        self.store = store
        self.parent_hash = parent_hash
        self.wait_finalized = wait_finalized

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
        root (validators re-derive the model from them)."""
        seconds: dict[str, float] = {}
        started = time.monotonic()
        digest, uri = self.store.put(canonical_bytes(arrays))
        published, root = 0, None
        if verified is not None:
            for blob in verified.blobs.values():
                self.store.put_update(blob)
                published += len(blob)
            document = verified.manifest.to_json()
            self.store.put_manifest(verified.manifest.name(), document)
            published += len(document)
            root = verified.root
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
        )
        self.parent_hash = digest
        seconds["commit"] = time.monotonic() - started
        if self.wait_finalized > 0:
            started = time.monotonic()
            quorum.wait_finalized(self.client, self.task, round_number, self.wait_finalized)
            seconds["finalize"] = time.monotonic() - started
        suspended = [e["node"] for e in self.client.events(self.client.reputation, "AutoSuspended", receipt)]
        failpoint("after-commit", round_number)
        return Commit(round_number, digest, uri, receipt, suspended, seconds, root, published)
