"""Keep the dashboard's picture of the ledger current: a thread polls the chain's events (no
confirmations, a few times a second), looks up the block times and gas they do not carry, reads the
server's reports when it runs beside the server, and publishes a new numbered snapshot on change."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fl_chain.chain import quorum
from fl_chain.chain.client import ChainClient
from fl_chain.chain.watcher import ChainWatcher
from fl_chain.dashboard.ledger_view import ChainFacts, LedgerView
from fl_chain.errors import FlchainError
from fl_chain.wire.report import RoundReport, RunEventsReader

POLL_INTERVAL = 0.25  # seconds between polls: a new block shows on the page well within 2 s


class LedgerSync:
    """The dashboard's source of truth: `snapshot()` is the newest picture, `version` counts changes."""

    def __init__(self, client: ChainClient, home: Path | None = None) -> None:
        """`home`: the state directory of a server or demo beside this dashboard, whose run reports
        (HOME/rounds.jsonl, HOME/runs/*/rounds.jsonl) add the server's accuracy to rounds."""
        self.client = client
        self.watcher = ChainWatcher(client, None, confirmations=0)
        self.view = LedgerView()
        self.facts = ChainFacts()
        self.home = home
        self._readers: dict[Path, RunEventsReader] = {}
        self.accuracy_by_hash: dict[str, float] = {}
        self.report_error = ""  # a run report beside the chain that could not be read
        self.version = 0
        self.status = "starting"
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, Any]:
        """The newest picture of the ledger, with its version and the chain's head."""
        with self._lock:
            return self._snapshot

    def step(self) -> bool:
        """One poll; True if the picture changed (a new snapshot was published)."""
        # The events go into the view before anything else is asked of the chain: the watcher's cursor has
        # moved past them, so a lookup failing now must not lose them (their facts are retried next poll).
        changed = self.view.apply(self.watcher.poll())
        changed = self._learn_facts() or changed
        changed = self._read_reports() or changed
        head = self.watcher.cursor.block
        if changed or not self._snapshot or self._snapshot["chain"]["head"] != head or self.status != "live":
            self.status = "live"
            self._publish(head)
            return True
        return False

    def _learn_facts(self) -> bool:
        """Block times and commit gas not yet known for the view's events; True if any were learned."""
        w3 = self.watcher.client.w3
        learned = False
        for event in self.view.delivered:
            if event.block_number not in self.facts.block_time:
                learned = True
                self.facts.block_time[event.block_number] = int(
                    w3.eth.get_block(event.block_number)["timestamp"]
                )
            if event.name == "RoundCommitted" and event.tx_hash not in self.facts.tx_gas:
                learned = True
                self.facts.tx_gas[event.tx_hash] = int(
                    w3.eth.get_transaction_receipt(event.tx_hash)["gasUsed"]
                )
        return learned

    def _read_reports(self) -> bool:
        if self.home is None:
            return False
        changed = False
        for path in [self.home / "rounds.jsonl", *sorted(self.home.glob("runs/*/rounds.jsonl"))]:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            reader = self._readers.get(path)
            if reader is None or size < reader.offset:  # new, or a new run replaced the file
                reader = self._readers[path] = RunEventsReader(path)
            try:
                entries = reader.new_entries()
            except FlchainError as exc:  # a damaged report costs its accuracy figures, not the page
                changed = changed or self.report_error != str(exc)
                self.report_error = str(exc)
                continue
            for entry in entries:
                if isinstance(entry, RoundReport) and entry.model_hash:
                    self.accuracy_by_hash[entry.model_hash.lower()] = entry.accuracy
                    changed = True
        return changed

    def _publish(self, head: int) -> None:
        deployment = self.client.deployment
        picture = self.view.snapshot(self.facts, self.accuracy_by_hash)
        needed = quorum.quorum(self.client) if self.client.validation is not None else None
        picture["chain"] = {
            "chain_id": deployment.chain_id,
            "rpc": deployment.rpc_url,
            "head": head,
            "quorum": needed,
            "contracts": deployment.contracts,
            "status": self.status,
            "report_error": self.report_error,
        }
        with self._lock:
            self.version += 1
            picture["version"] = self.version
            self._snapshot = picture

    def _set_status(self, status: str) -> None:
        with self._lock:
            if self._snapshot and self.status != status:
                self.version += 1
                self._snapshot = {
                    **self._snapshot,
                    "version": self.version,
                    "chain": {**self._snapshot["chain"], "status": status},
                }
            self.status = status

    def run(self) -> None:
        """Poll until `stop()`; an unreachable chain is shown on the page and retried with backoff."""
        backoff = POLL_INTERVAL
        while not self._stop.is_set():
            try:
                self.step()
                backoff = POLL_INTERVAL
            except Exception as exc:  # the chain went away or answered garbage: say so, keep trying
                self._set_status(f"not live: {str(exc)[:200]}")
                backoff = min(backoff * 2, 5.0)
            self._stop.wait(backoff)

    def start(self) -> LedgerSync:
        """Run the first poll here (so errors surface at start) and the rest in a daemon thread."""
        self.step()
        self._thread = threading.Thread(target=self.run, name="ledger-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
