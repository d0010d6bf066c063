"""NodeSupervisor: what `flchain client` does once its inputs are checked. Runs this node's SuperNode
(with its `NodeConfig`), restarts it when the SuperLink goes away so a restarted or resumed server finds
the node again, and reports the chain events that concern the node from its own ChainWatcher.

The node's decrypted key never leaves this process: the SuperNode runs with `--isolation process`, this
process starts its app processes (runners/app_launcher.py) with an environment holding neither key nor
password, and signs for them through its signing agent (runners/signing_agent.py), which signs only
flchain's join answer and update claim for this node's chain and ledger, and with `app_hash` only for
the pinned app bundle."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fl_chain.chain.client import ChainClient
from fl_chain.chain.setup.localnode import free_port
from fl_chain.chain.watcher import ChainEvent, ChainWatcher, is_fatal
from fl_chain.errors import FlchainError
from fl_chain.interrupts import raise_if_stopping
from fl_chain.node.claims_file import CLAIMS_ENV
from fl_chain.node.inclusion import check_inclusion, claims_for
from fl_chain.node.signer import SIGNER_ENV
from fl_chain.protocol.fixedpoint import from_fixed
from fl_chain.protocol.update_signing import SignedUpdate
from fl_chain.runners.app_launcher import AppLauncher
from fl_chain.runners.processes import SECRET_ENV, Managed, child_environment, start_supernode
from fl_chain.runners.signing_agent import SigningAgent
from fl_chain.wire.node_config import NodeConfig

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

RESTART_DELAY = 2.0


@dataclass
class NodeSupervisor:
    """One node's SuperNode and chain watcher (see the module docstring)."""

    chain: ChainClient
    address: str
    node: NodeConfig
    superlink: str
    log: Path
    account: LocalAccount = field(repr=False)  # decrypted once here, never handed to another process
    root_certificates: Path | None = None
    port: int | None = None
    status: str = ""  # the node's registry status when it started
    app_hash: str | None = None  # the only app bundle (FAB hash) this node runs, if pinned
    _process: Managed | None = None
    _agent: SigningAgent | None = None
    _launcher: AppLauncher | None = None

    @classmethod
    def open(cls, node: NodeConfig, key: Path, password: str, superlink: str, home: Path) -> NodeSupervisor:
        """Check everything before starting anything: the task imports, the key decrypts, the chain
        answers; the node's log goes to HOME/nodes/ADDRESS.log."""
        from fl_chain.chain import registry
        from fl_chain.chain.client import open_chain
        from fl_chain.chain.identity import load_key
        from fl_chain.store_read import allow_local_store
        from fl_chain.tasks import load_task

        load_task(node.task)  # a task that does not import fails here, not in every app process
        allow_local_store(home / "store")  # this machine's store (as for pull and audit): file:// reads there
        account = load_key(key, password)
        chain = open_chain(node.deployment, node.rpc)
        log = home / "nodes" / f"{account.address}.log"
        supervisor = cls(chain, account.address, node, superlink, log, account)
        supervisor.status = registry.status_of(chain, account.address)
        return supervisor

    @property
    def claims(self) -> Path:
        """The file where this node's app processes record the updates they sign (node/inclusion.py)."""
        return self.log.with_suffix(".claims.jsonl")

    def start(self) -> Managed:
        """Start the signing agent (once), the SuperNode and the launcher of its app processes; the app
        processes get the agent's socket path and the claims file, no key and no password."""
        if self._agent is None:
            from fl_chain.chain.client import open_chain

            # Its own connection: the agent answers in its own threads while this one watches the chain.
            agent_chain = open_chain(self.node.deployment, self.node.rpc)
            self._agent = SigningAgent(
                self.account, agent_chain, self.app_hash, post_claims=self.node.post_claims
            )
            self._agent.start()
        port = self.port or free_port()
        self._process = start_supernode(
            self.superlink,
            port,
            self.node.to_node_config(),
            self.log,
            self.root_certificates,
            isolation="process",
        )
        env = child_environment({SIGNER_ENV: str(self._agent.path), CLAIMS_ENV: str(self.claims)}, SECRET_ENV)
        self._launcher = AppLauncher(f"127.0.0.1:{port}", self._agent, self.log, env, self.app_hash)
        self._launcher.start()
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
            status = "not registered" if self.status == "None" else self.status
            say(f"node {self.address} ({status}) -> SuperLink {self.superlink} (pid {process.pid})")
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
                raise_if_stopping()
                self._report(watcher, on_event, on_notice)
                time.sleep(0.5)
                raise_if_stopping()
                if self._process.proc.poll() is not None:
                    on_notice(
                        f"SuperNode exited with code {self._process.proc.returncode} "
                        f"(SuperLink {self.superlink} gone?); restarting it in {RESTART_DELAY:g} s; "
                        f"see {self.log}"
                    )
                    self._stop_node()
                    time.sleep(RESTART_DELAY)
                    self.start()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the app processes, the SuperNode (and everything it started) by PID, and the agent."""
        self._stop_node()
        if self._agent is not None:
            self._agent.stop()
            self._agent = None

    def _stop_node(self) -> None:
        """Stop the launcher with its app processes, then the SuperNode."""
        if self._launcher is not None:
            self._launcher.stop()
            self._launcher = None
        if self._process is not None:
            self._process.stop()
            self._process = None

    def _inclusion(self, signed: SignedUpdate, ticket: str) -> str:
        """Check (and if need be complain about) one signed update of this node; one line to show."""
        try:
            return check_inclusion(self.chain, self.account, signed, ticket).line()
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
