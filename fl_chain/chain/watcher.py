"""ChainWatcher: typed flchain events from a persisted block cursor, delivered once they have N
confirmations, with reorganisations detected by block hash and orphaned events retracted.

Guarantees: every event of the canonical chain up to `head - confirmations` is delivered exactly once
per cursor file, in (block, log index) order, across restarts; an event whose block is later orphaned
is delivered again with `removed=True` before the canonical replacement events. Reorgs deeper than
`REORG_WINDOW` blocks are reported as an error (never silently skipped). Data is read over HTTP(S);
with a ws(s):// URL the watcher subscribes to new heads and polls as soon as a block arrives (instead
of on a timer). Connection failures are retried with exponential backoff without advancing the cursor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3.exceptions import BlockNotFound

from fl_chain.chain.client import ChainClient
from fl_chain.chain.patient_http import ChainUnreachable
from fl_chain.errors import FlchainError, read_text_file
from fl_chain.interrupts import raise_if_stopping

REORG_WINDOW = 64
WATCHER_REQUEST_PATIENCE = 3.0  # seconds one request is retried before the poll fails
KINDS = {
    "NodeApplied": "node_applied",
    "NodeStatusChanged": "node_status",
    "WorkAccepted": "node_joined_by_work",
    "TaskCreated": "task_created",
    "RoundCommitted": "round_committed",
    "ContributionRecorded": "contribution",
    "UpdatesCommitted": "updates_committed",
    "UpdateOmitted": "update_omitted",
    "ClaimPosted": "claim_posted",
    "ChargesRecorded": "charges_recorded",
    "ChargesSettled": "charges_settled",
    "ReputationUpdated": "reputation",
    "AutoSuspended": "auto_suspended",
    "RoundMissed": "round_missed",
    "Penalized": "penalized",
    "Attested": "attestation",
    "RoundFinalized": "round_finalized",
    "DerivationAttested": "derivation_attested",
    "Disputed": "dispute",
    "RoundDisputed": "round_disputed",
    "OutcomesCommitted": "outcomes_committed",
    "OutcomesAttested": "outcomes_attested",
    "CheckpointProposed": "checkpoint_proposed",
    "CheckpointAttested": "checkpoint_attested",
    "CheckpointDisputed": "checkpoint_disputed",
    "CheckpointFinalized": "checkpoint_finalized",
    "CheckpointRejectedByQuorum": "checkpoint_rejected",
    "SuspensionApplied": "suspension_applied",
}


@dataclass
class ChainEvent:
    """One decoded event; `removed` marks the retraction of an event from an orphaned block."""

    kind: str
    name: str
    contract: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    args: dict[str, Any]
    removed: bool = False

    @property
    def key(self) -> str:
        """Identity of the event within its block."""
        return f"{self.block_hash}:{self.log_index}"


@dataclass
class Cursor:
    """What the watcher has delivered: last block, recent block hashes and their events."""

    block: int = -1
    hashes: dict[str, str] = field(default_factory=dict)  # block number -> hash, last REORG_WINDOW
    delivered: dict[str, list[dict]] = field(default_factory=dict)  # block number -> events

    def save(self, path: Path) -> None:
        """Atomic write."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Cursor:
        """Read a cursor file, with a one-line error if it is not one."""
        try:
            cursor = cls(**json.loads(read_text_file(path, "watcher cursor file")))
        except (ValueError, TypeError) as exc:
            raise FlchainError(f"{path}: not a watcher cursor file ({str(exc)[:100]})") from None
        if (
            not isinstance(cursor.block, int)
            or not isinstance(cursor.hashes, dict)
            or not isinstance(cursor.delivered, dict)
            or not all(isinstance(h, str | None) for h in cursor.hashes.values())
            or not all(isinstance(e, list) for e in cursor.delivered.values())
        ):
            raise FlchainError(f"{path}: not a watcher cursor file (fields of the wrong type)")
        return cursor


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class ChainWatcher:
    """Poll the chain for the flchain contracts' events (see the module docstring)."""

    def __init__(
        self,
        client: ChainClient,
        cursor_path: Path | None = None,
        confirmations: int = 0,
        from_block: int | None = None,
        batch_blocks: int = 2000,
    ) -> None:
        # A connection of its own that rides out a lost answer or two (a poll is many requests and
        # fails whole) but not an outage: `run` retries those forever and reports every retry, where
        # the shared client would wait up to its patience and then give up.
        self.client = client.with_patience(WATCHER_REQUEST_PATIENCE, report=lambda message: None)
        self.cursor_path = cursor_path
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        if cursor_path is not None and cursor_path.exists():
            self.cursor = Cursor.load(cursor_path)
        else:
            start = client.deployment.deployed_block if from_block is None else from_block
            self.cursor = Cursor(block=start - 1)
        self._decoders: dict[bytes, tuple[str, Any]] = {}
        watched = [
            ("NodeRegistry", client.registry),
            ("Reputation", client.reputation),
            ("ModelLedger", client.ledger),
        ]
        if client.validation is not None:
            watched.append(("ValidationQuorum", client.validation))
        if client.checkpoints is not None:
            watched.append(("ReputationCheckpoints", client.checkpoints))
        for name, contract in watched:
            for item in contract.abi:
                if item.get("type") == "event" and item["name"] in KINDS:
                    self._decoders[event_abi_to_log_topic(item)] = (name, contract.events[item["name"]]())
        self.addresses = [contract.address for _, contract in watched]

    def _block_hash(self, number: int) -> str | None:
        try:
            return "0x" + bytes(self.client.w3.eth.get_block(number)["hash"]).hex()
        except BlockNotFound:
            return None

    def _check_reorg(self) -> list[ChainEvent]:
        """Retractions for remembered blocks that are no longer canonical; rewinds the cursor."""
        known = sorted((int(n) for n in self.cursor.hashes), reverse=True)
        if not known:
            return []
        fork = None
        for number in known:
            if self._block_hash(number) == self.cursor.hashes[str(number)]:
                fork = number
                break
        if fork == known[0]:
            return []
        if fork is None:
            raise FlchainError(
                f"reorganisation deeper than the {len(known)} remembered blocks (below block {known[-1]}): "
                "re-sync from an older --from-block"
            )
        retracted = []
        for number in known:
            if number <= fork:
                break
            for raw in reversed(self.cursor.delivered.pop(str(number), [])):
                retracted.append(ChainEvent(**{**raw, "removed": True}))
            self.cursor.hashes.pop(str(number), None)
        self.cursor.block = fork
        return retracted

    def poll(self) -> list[ChainEvent]:
        """One step: retractions (if a reorg happened), then new confirmed events; the cursor is saved."""
        head = self.client.w3.eth.block_number
        if self.cursor.block > head and not self.cursor.hashes:
            raise FlchainError(
                f"the watcher cursor is at block {self.cursor.block}, past the chain head {head} "
                "(was the chain reset?): delete the cursor file or pass an earlier --from-block"
            )
        out = self._check_reorg()
        if self.cursor.block > head:
            raise FlchainError(
                f"the watcher cursor is at block {self.cursor.block}, past the chain head {head} "
                "(was the chain reset?): delete the cursor file or pass an earlier --from-block"
            )
        safe = head - self.confirmations
        while self.cursor.block < safe:
            start = self.cursor.block + 1
            end = min(safe, start + self.batch_blocks - 1)
            logs = self.client.w3.eth.get_logs(
                {"fromBlock": start, "toBlock": end, "address": self.addresses}
            )
            by_block: dict[int, list[ChainEvent]] = {}
            for log in sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
                event = self._decode(log)
                if event is not None:
                    by_block.setdefault(event.block_number, []).append(event)
            for number in range(max(start, end - REORG_WINDOW + 1), end + 1):
                self.cursor.hashes[str(number)] = self._block_hash(number)
            for number, events in by_block.items():
                if number > end - REORG_WINDOW:
                    self.cursor.delivered[str(number)] = [asdict(e) for e in events]
                out.extend(events)
            self.cursor.block = end
            self._trim()
        if self.cursor_path is not None:
            self.cursor.save(self.cursor_path)
        return out

    def _trim(self) -> None:
        floor = self.cursor.block - REORG_WINDOW
        for table in (self.cursor.hashes, self.cursor.delivered):
            for number in [n for n in table if int(n) <= floor]:
                del table[number]

    def _decode(self, log: Any) -> ChainEvent | None:
        decoder = self._decoders.get(bytes(log["topics"][0])) if log["topics"] else None
        if decoder is None:
            return None
        contract, event = decoder
        decoded = event.process_log(log)
        return ChainEvent(
            kind=KINDS[decoded["event"]],
            name=decoded["event"],
            contract=contract,
            block_number=int(log["blockNumber"]),
            block_hash="0x" + bytes(log["blockHash"]).hex(),
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
            log_index=int(log["logIndex"]),
            args={k: _jsonable(v) for k, v in decoded["args"].items()},
        )

    def run(
        self,
        on_event: Callable[[ChainEvent], None],
        stop: Callable[[], bool] = lambda: False,
        interval: float = 0.5,
        on_retry: Callable[[str, float], None] | None = None,
        max_backoff: float = 16.0,
        ws_url: str | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        """Poll until `stop()`; connection errors back off exponentially and never advance the cursor.
        With `ws_url`, a newHeads subscription wakes the watcher for every block. `on_idle` runs after
        every poll (polling mode), e.g. to retry work that waited for data."""
        if ws_url:
            self._run_subscribed(ws_url, on_event, stop, on_retry, max_backoff)
            return
        backoff = interval
        while not stop():
            raise_if_stopping()
            try:
                events = self.poll()
                backoff = interval
            except Exception as exc:  # RPC dropped: requests/websocket errors of every kind
                if is_fatal(exc):
                    raise
                if on_retry is not None:
                    on_retry(f"{type(exc).__name__}: {exc}", backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            for event in events:
                on_event(event)
            if on_idle is not None:
                on_idle()
            time.sleep(interval)

    def _deliver(self, on_event: Callable[[ChainEvent], None]) -> None:
        for event in self.poll():
            on_event(event)

    def _run_subscribed(
        self,
        ws_url: str,
        on_event: Callable[[ChainEvent], None],
        stop: Callable[[], bool],
        on_retry: Callable[[str, float], None] | None,
        max_backoff: float,
    ) -> None:
        import asyncio

        from web3 import AsyncWeb3, WebSocketProvider

        async def subscribe() -> None:
            # One connection attempt per try: the loop below backs off and tells the user, not web3 silently.
            async with AsyncWeb3(WebSocketProvider(ws_url, max_connection_retries=1)) as w3:
                await w3.eth.subscribe("newHeads")
                self._deliver(on_event)  # anything that happened before the subscription
                async for _ in w3.socket.process_subscriptions():
                    self._deliver(on_event)
                    if stop():
                        return

        backoff = 0.5
        while not stop():
            raise_if_stopping()
            try:
                asyncio.run(subscribe())
                backoff = 0.5
            except Exception as exc:  # the socket dropped: resubscribe, the cursor did not move
                if is_fatal(exc):
                    raise
                if on_retry is not None:
                    on_retry(f"{type(exc).__name__}: {exc}", backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)


def is_fatal(exc: Exception) -> bool:
    """Errors a retry cannot mend (a cursor past the head, a deep reorg), as opposed to a node that
    dropped the connection or is away (ChainUnreachable), which the watcher waits out."""
    return isinstance(exc, FlchainError) and not isinstance(exc, ChainUnreachable)
