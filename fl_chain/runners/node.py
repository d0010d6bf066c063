"""NodeSupervisor: what `flchain client` does once its inputs are checked. Runs this node's SuperNode
(with its `NodeConfig`), restarts it when the SuperLink goes away so a restarted or resumed server finds
the node again, and reports the chain events that concern the node from its own ChainWatcher."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fl_chain.chain.client import ChainClient
from fl_chain.chain.identity import DECRYPTED_KEY_ENV
from fl_chain.chain.setup.localnode import free_port
from fl_chain.chain.watcher import ChainEvent, ChainWatcher, is_fatal
from fl_chain.errors import FlchainError
from fl_chain.node.claims_file import CLAIMS_ENV
from fl_chain.node.inclusion import check_inclusion, claims_for
from fl_chain.protocol.fixedpoint import from_fixed
from fl_chain.protocol.update_signing import SignedUpdate
from fl_chain.runners.processes import Managed, start_supernode
from fl_chain.wire.node_config import NodeConfig

RESTART_DELAY = 2.0


@dataclass
class NodeSupervisor:
    """One node's SuperNode and chain watcher (see the module docstring)."""

    chain: ChainClient
    address: str
    node: NodeConfig
    superlink: str
    log: Path
    secret_key: str = field(repr=False)  # decrypted once here; app processes get it by environment
    root_certificates: Path | None = None
    port: int | None = None
    status: str = ""  # the node's registry status when it started
    _process: Managed | None = None

    @classmethod
    def open(cls, node: NodeConfig, key: Path, password: str, superlink: str, home: Path) -> NodeSupervisor:
        """Check everything before starting anything: the task imports, the key decrypts, the chain
        answers; the node's log goes to HOME/nodes/ADDRESS.log."""
        from fl_chain.chain import registry
        from fl_chain.chain.client import open_chain
        from fl_chain.chain.identity import load_key
        from fl_chain.tasks import load_task

        load_task(node.task)  # a task that does not import fails here, not in every app process
        account = load_key(key, password)
        chain = open_chain(node.deployment, node.rpc)
        log = home / "nodes" / f"{account.address}.log"
        supervisor = cls(
            chain, account.address, node, superlink, log, "0x" + account.key.hex().removeprefix("0x")
        )
        supervisor.status = registry.status_of(chain, account.address)
        return supervisor

    @property
    def claims(self) -> Path:
        """The file where this node's app processes record the updates they sign (node/inclusion.py)."""
        return self.log.with_suffix(".claims.jsonl")

    def start(self) -> Managed:
        """Start the SuperNode; the decrypted key reaches its app processes by environment only (each
        message's app process would otherwise spend ~0.7 s on the keystore's scrypt)."""
        self._process = start_supernode(
            self.superlink,
            self.port or free_port(),
            self.node.to_node_config(),
            self.log,
            self.root_certificates,
            {DECRYPTED_KEY_ENV: self.secret_key, CLAIMS_ENV: str(self.claims)},
        )
        return self._process

    def serve(
        self,
        on_event: Callable[[ChainEvent], None],
        say: Callable[[str], None],
        complain: Callable[[str], None],
    ) -> None:
        """Start, say so, supervise until Ctrl-C or SIGTERM (as KeyboardInterrupt), and stop by PID."""
        try:
            process = self.start()
            say(f"node {self.address} ({self.status}) -> SuperLink {self.superlink} (pid {process.pid})")
            say(f"node log: {self.log}")
            self.run(on_event, complain)
        except KeyboardInterrupt:
            say("stopping the node")
        finally:
            self.stop()

    def run(self, on_event: Callable[[ChainEvent], None], on_notice: Callable[[str], None]) -> None:
        """Supervise until interrupted (Ctrl-C / SIGTERM arrive as KeyboardInterrupt); always stops the
        SuperNode by PID on the way out."""
        watcher = ChainWatcher(self.chain, None, from_block=self.chain.w3.eth.block_number + 1)
        if self._process is None:
            self.start()
        try:
            while True:
                self._report(watcher, on_event, on_notice)
                time.sleep(0.5)
                if self._process.proc.poll() is not None:
                    on_notice(
                        f"SuperNode exited with code {self._process.proc.returncode} "
                        f"(SuperLink {self.superlink} gone?); restarting it in {RESTART_DELAY:g} s; "
                        f"see {self.log}"
                    )
                    self._process.stop()
                    time.sleep(RESTART_DELAY)
                    self.start()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the SuperNode (and everything it started) by PID."""
        if self._process is not None:
            self._process.stop()
            self._process = None

    def _inclusion(self, signed: SignedUpdate, ticket: str) -> str:
        """Check (and if need be complain about) one signed update of this node; one line to show."""
        from eth_account import Account

        try:
            return check_inclusion(self.chain, Account.from_key(self.secret_key), signed, ticket).line()
        except FlchainError as exc:
            return f"task {signed.task} round {signed.round}: inclusion check failed: {exc}"

    def _standing(self, task: int) -> str:
        """This node's reputation and status in the task's newly finalized checkpoint, from its own proof
        (checked on-chain); empty if the checkpoint has no leaf for it (it has not taken part)."""
        from fl_chain.node.standing import node_proof

        try:
            found = node_proof(self.chain, task, self.address)
        except FlchainError as exc:
            return "" if "has no" in str(exc) else f"task {task}: checkpoint proof unavailable: {exc}"
        status = "active" if found.active else "SUSPENDED"
        return (
            f"task {task} checkpoint {found.checkpoint} (through round {found.through_round}): "
            f"my reputation {from_fixed(found.reputation):.4f}, {status}; "
            f"proof of {len(found.proof)} hashes verified on-chain"
        )

    def _report(
        self, watcher: ChainWatcher, on_event: Callable[[ChainEvent], None], on_notice: Callable[[str], None]
    ) -> None:
        """Round commits, and this node's reputation and status changes, as the chain has them."""
        try:
            events = watcher.poll()
        except Exception as exc:  # the RPC is down: try again on the next tick, the cursor did not move
            if is_fatal(exc):
                raise
            on_notice(f"chain unavailable: {type(exc).__name__}")
            return
        for event in events:
            if event.name == "UpdatesCommitted" and not event.removed:
                for signed, ticket in claims_for(
                    self.claims, int(event.args["task"]), int(event.args["round"])
                ):
                    on_notice(self._inclusion(signed, ticket))
            if event.name == "CheckpointFinalized" and not event.removed:
                line = self._standing(int(event.args["task"]))
                if line:
                    on_notice(line)
            mine = str(event.args.get("node", "")).lower() == self.address.lower()
            if event.name == "RoundCommitted" or (
                mine and event.name in ("ReputationUpdated", "NodeStatusChanged")
            ):
                on_event(event)
