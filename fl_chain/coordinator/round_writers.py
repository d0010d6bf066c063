"""What a round publishes and commits in each ledger mode, behind one small interface (RoundWriter).
The committer (coordinator/committer.py) stores the model and sends the commit; the writer of the task's
mode says what goes beside it: nothing (plain), the node-signed updates and their manifest (verified), or
the outcome leaves, the reputation fold and its checkpoints (commitment). The validator and the audit
have the same split on their side (verify/modes.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any

from eth_account.signers.local import LocalAccount
from flwr.common.logger import log
from web3.types import TxReceipt

from fl_chain.chain import charges, checkpoints, reputation, settlement
from fl_chain.chain.client import ChainClient
from fl_chain.coordinator.commitment import CommitmentBook
from fl_chain.coordinator.verified_round import VerifiedRound
from fl_chain.errors import FlchainError
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.protocol.manifest import Entry
from fl_chain.protocol.model_bytes import canonical_size
from fl_chain.protocol.outcomes import RoundOutcomes
from fl_chain.store import BlobStore


@dataclass
class RoundInput:
    """One round as the coordinator decided it, before it is published."""

    round: int
    parent: bytes
    model_hash: bytes
    scores: Mapping[str, int]
    missed: Sequence[str]
    penalized: Sequence[str]
    verified: VerifiedRound | None = None


@dataclass
class Prepared:
    """What a writer published for a round and what the commit transaction carries besides the model."""

    commit_args: dict[str, Any] = field(default_factory=dict)  # ledger.commit_round's mode arguments
    published_bytes: int = 0
    updates_root: bytes | None = None
    outcomes: RoundOutcomes | None = None


class PlainWriter:
    """Plain mode: the model and every participant's score go on-chain; Reputation applies them."""

    mode = LedgerMode.PLAIN

    def __init__(self, client: ChainClient, coordinator: LocalAccount, task: int, store: BlobStore) -> None:
        self.client, self.coordinator, self.task, self.store = client, coordinator, task, store

    def prepare(self, rnd: RoundInput) -> Prepared:
        """Publish what the round needs beside its model (nothing in plain mode)."""
        if rnd.verified is not None:
            raise FlchainError(f"task {self.task} is in {self.mode.label} mode: it commits no verified round")
        return Prepared()

    def charges(self, rnd: RoundInput) -> tuple[list[str], list[str]]:
        """The (missed, penalized) lists the commit sends: sorted, deduplicated and disjoint, and only
        nodes the task may charge (ModelLedger.chargeable: its members, and nodes in no task yet; a node
        that works only in other tasks stays in the round report, uncharged)."""
        missed, penalized = charges.penalty_lists(rnd.scores, rnd.missed, rnd.penalized)
        if not missed and not penalized:
            return missed, penalized
        allowed = charges.chargeable_among(self.client, self.task, [*missed, *penalized])
        return [a for a in missed if a.lower() in allowed], [a for a in penalized if a.lower() in allowed]

    def suspended_by(self, receipt: TxReceipt, prepared: Prepared) -> list[str]:
        """The nodes the commit suspended (Reputation's AutoSuspended events in its transaction)."""
        return [e["node"] for e in self.client.events(self.client.reputation, "AutoSuspended", receipt)]

    def checkpoint(self, round_number: int) -> tuple[int, int] | None:
        """A reputation checkpoint proposed after the round: (id, bytes published); none in this mode."""
        return None

    def wait_checkpoint(self, checkpoint_id: int, timeout: float) -> None:
        """Wait until a proposed checkpoint is final (nothing to wait for in this mode)."""

    def after_finality(self) -> list[str]:
        """Apply what finality made binding; the nodes suspended now (none in this mode)."""
        return []

    def reputations(self, addresses: Iterable[str]) -> dict[str, int]:
        """Reputation (fixed point) of each address, as selection reads it."""
        return reputation.reputations(self.client, addresses)

    def held_back(self) -> set[str]:
        """Nodes not to sample although the registry still lists them Active (lowercase)."""
        return set()


class VerifiedWriter(PlainWriter):
    """Verified mode: the included node-signed updates and the manifest are stored, their root committed;
    round 0 (the initial model) commits plain."""

    mode = LedgerMode.VERIFIED

    def prepare(self, rnd: RoundInput) -> Prepared:
        """Store every included update blob and the round's manifest; commit their root."""
        verified = rnd.verified
        if verified is None:
            if rnd.round == 0:
                return Prepared()
            raise FlchainError(f"task {self.task} is in verified mode: round {rnd.round} needs its updates")
        published = 0
        for update_hash, arrays in verified.blobs.items():
            # the hash was checked against these very arrays when the signature was: not computed again
            self.store.put_update(arrays, bytes.fromhex(update_hash.removeprefix("0x")))
            published += canonical_size(arrays)
        document = verified.manifest.to_json()
        self.store.put_document(verified.manifest.name(), document)
        published += len(document)
        return Prepared({"updates_root": verified.root}, published, verified.root)

    def charges(self, rnd: RoundInput) -> tuple[list[str], list[str]]:
        """As in plain mode, and what validators check against the manifest: a penalized node is
        disclosed as excluded with its reason, a missed node is not disclosed at all (one that is, has
        answered). A node penalized without a disclosed entry stays in the round report only."""
        missed, penalized = super().charges(rnd)
        if rnd.verified is None:
            return missed, penalized
        manifest = rnd.verified.manifest
        missed = [a for a in missed if manifest.entry_of(a) is None]
        return missed, [a for a in penalized if _disclosed_excluded(manifest.entry_of(a))]

    def suspended_by(self, receipt: TxReceipt, prepared: Prepared) -> list[str]:
        """None at commit: a verified round's charges wait for its finality (after_finality)."""
        return []

    def after_finality(self) -> list[str]:
        """Settle the charges of every round whose finality now stands (chain/settlement.py); the nodes
        they suspended. A failed settlement is said and retried after the next round: it never stops
        training."""
        try:
            rounds, suspended = settlement.settle_due(self.client, self.coordinator, self.task)
        except FlchainError as exc:
            log(WARNING, "settling finalized rounds' charges failed (retried next round): %s", exc)
            return []
        if rounds:
            log(INFO, "charges of round(s) %s settled: finality stands", ", ".join(str(r) for _, r in rounds))
        return suspended


def _disclosed_excluded(entry: Entry | None) -> bool:
    """Whether a manifest entry discloses an excluded update with its reason."""
    return entry is not None and not entry.included and bool(entry.reason)


class CommitmentWriter(PlainWriter):
    """Commitment mode: the round's outcome leaves are stored and their root committed (flat gas);
    reputation is folded off-chain and checkpointed every `every` rounds."""

    mode = LedgerMode.COMMITMENT

    def __init__(
        self, client: ChainClient, coordinator: LocalAccount, task: int, store: BlobStore, every: int = 1
    ) -> None:
        super().__init__(client, coordinator, task, store)
        self.book = CommitmentBook(client, coordinator, task, store, every)

    def prepare(self, rnd: RoundInput) -> Prepared:
        """Store the round's outcome leaves; commit their root and count."""
        if rnd.verified is not None:
            raise FlchainError(f"task {self.task} is in commitment mode: it commits no verified round")
        outcomes = self.book.outcomes(
            rnd.round, rnd.parent, rnd.model_hash, rnd.scores, rnd.missed, rnd.penalized
        )
        document = outcomes.to_json()
        self.store.put_document(outcomes.name(), document)
        args = {"outcomes": (outcomes.root(), len(outcomes.outcomes))}
        return Prepared(args, len(document), outcomes=outcomes)

    def charges(self, rnd: RoundInput) -> tuple[list[str], list[str]]:
        """Nothing is charged on-chain in this mode (commitOutcomes takes no lists): the outcome leaves
        carry the round's missed and penalized nodes."""
        return list(rnd.missed), list(rnd.penalized)

    def suspended_by(self, receipt: TxReceipt, prepared: Prepared) -> list[str]:
        """The nodes the fold suspends with this round (binding once a checkpoint holding it is final)."""
        assert prepared.outcomes is not None
        return self.book.record(prepared.outcomes)

    def checkpoint(self, round_number: int) -> tuple[int, int] | None:
        """Publish and propose a checkpoint of the fold when this round is due one."""
        return self.book.propose_if_due(round_number)

    def wait_checkpoint(self, checkpoint_id: int, timeout: float) -> None:
        """Wait until the validators finalized the checkpoint."""
        checkpoints.wait_finalized(self.client, checkpoint_id, timeout)

    def after_finality(self) -> list[str]:
        """Apply the suspensions of the latest finalized checkpoint to the registry."""
        return self.book.apply_finalized()

    def reputations(self, addresses: Iterable[str]) -> dict[str, int]:
        """The fold's reputations (no RPC call per candidate)."""
        return self.book.reputations(addresses)

    def held_back(self) -> set[str]:
        """Nodes the fold holds suspended, finalized on-chain or not."""
        return self.book.suspended()


def writer_for(
    mode: LedgerMode,
    client: ChainClient,
    coordinator: LocalAccount,
    task: int,
    store: BlobStore,
    checkpoint_every: int = 1,
) -> PlainWriter:
    """The round writer of a ledger mode."""
    if mode is LedgerMode.COMMITMENT:
        return CommitmentWriter(client, coordinator, task, store, checkpoint_every)
    return (VerifiedWriter if mode is LedgerMode.VERIFIED else PlainWriter)(client, coordinator, task, store)
