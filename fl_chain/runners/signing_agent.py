"""The signing agent of `flchain client`: the node's decrypted key stays in the `flchain client` process,
and the app processes it starts for its SuperNode (runners/app_launcher.py) ask it for signatures over a
Unix socket (node/signer.py is the other end).

Who can ask: the socket lives in a fresh 0700 directory with mode 0600, and the agent answers only a
peer whose PID (SO_PEERCRED) is an app process this node started, for the run and app bundle the
SuperNode gave it. With `--app-hash`, it signs nothing for an app process of another bundle.
What it signs: only flchain's two statements, and only for this node's own chain and ModelLedger:
- a join answer (protocol/join.py) for the run the asking process serves, naming a task that exists;
- an update claim (protocol/update_signing.py) for the round a task is training now (its next round).
Anything else gets a one-line refusal. The agent never answers with the key and signs one transaction
only: with `flchain client --post-claims`, the postClaim of the update claim it just signed (once per
task and round, a "claim" request carrying the coordinator's ticket). App code cannot move the node's
funds, complain on its behalf, post a claim the agent did not sign, or sign for another ledger.

`forget_secrets` is what `flchain client` does once the key is decrypted: the keystore password leaves
its environment (also the copy the kernel shows in /proc/PID/environ), and the process is made
non-dumpable so processes of the same user cannot read its memory or environment through /proc or
ptrace (root, and Linux without PR_SET_DUMPABLE, are beyond what a process can refuse)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl_chain.errors import FlchainError
from fl_chain.protocol import fields
from fl_chain.protocol.join import JoinStatement, sign_statement
from fl_chain.protocol.update_signing import sign_update

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from fl_chain.chain.client import ChainClient

ADMIT_WAIT = 5.0  # seconds a request waits for its process to be registered (it races its own launch)
MAX_REQUEST = 4096  # bytes: statements are short
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class LaunchedApp:
    """An app process this node started: the run it serves and its bundle's hash, as the SuperNode says."""

    run_id: int
    fab_hash: str


class SigningAgent:
    """Signs flchain's statements for the app processes of this node (see the module docstring)."""

    def __init__(
        self,
        account: LocalAccount,
        chain: ChainClient,
        app_hash: str | None = None,
        post_claims: bool = False,
    ) -> None:
        self._account = account
        self.post_claims = post_claims
        self._signed: dict[
            int, tuple[int, bytes, int]
        ] = {}  # task -> last claim signed (round, hash, weight)
        self._posted: dict[int, int] = {}  # task -> last round whose claim was posted
        self.chain = chain
        self.chain_id = chain.deployment.chain_id
        self.ledger = str(chain.ledger.address)
        self.app_hash = app_hash
        self.admit_wait = ADMIT_WAIT
        self._apps: dict[int, LaunchedApp] = {}
        self._admitted = threading.Condition()
        self._lock = threading.Lock()  # one statement at a time: chain reads share one web3 connection
        self.directory = Path(tempfile.mkdtemp(prefix="flchain-agent-"))  # mode 0700
        self.path = self.directory / "signer.sock"
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    @property
    def address(self) -> str:
        """The node's address."""
        return self._account.address

    def admit(self, pid: int, run_id: int, fab_hash: str) -> None:
        """Register an app process this node just started."""
        with self._admitted:
            self._apps[pid] = LaunchedApp(run_id, fab_hash)
            self._admitted.notify_all()

    def forget(self, pid: int) -> None:
        """An app process ended: its PID may be reused by anything."""
        with self._admitted:
            self._apps.pop(pid, None)

    def start(self) -> Path:
        """Listen on the socket (0600 in a 0700 directory); returns its path."""
        agent = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(10.0)
                line = self.rfile.readline(MAX_REQUEST + 1)
                try:
                    body = json.loads(line) if len(line) <= MAX_REQUEST else None
                except ValueError:
                    body = None
                answer = agent.answer(_peer_pid(self.request), body)
                with contextlib.suppress(OSError):
                    self.wfile.write(json.dumps(answer).encode() + b"\n")

        server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        server.daemon_threads = True
        os.chmod(self.path, 0o600)
        self._server = server
        threading.Thread(target=server.serve_forever, name="flchain-signing-agent", daemon=True).start()
        return self.path

    def stop(self) -> None:
        """Stop listening and remove the socket's directory."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def answer(self, pid: int | None, body: object) -> dict[str, Any]:
        """The answer to one request from process `pid`: {"ok": true, ...} or {"ok": false, "error"}."""
        try:
            app = self._app_of(pid)
            kind = body.get("statement") if isinstance(body, dict) else None
            if kind == "address":
                return {"ok": True, "address": self.address}
            if kind == "join":
                with self._lock:
                    return {"ok": True, "signature": self._sign_join(app, body)}
            if kind == "update":
                with self._lock:
                    return {"ok": True, "signature": self._sign_update(body), "ledger": self.ledger}
            if kind == "claim":
                with self._lock:
                    return {"ok": True, "tx": self._post_claim(body)}
            shown = kind if isinstance(kind, str) and len(kind) <= 32 else "?"
            raise FlchainError(
                f"{shown!r} is not a statement flchain signs (only 'join', 'update' and 'claim')"
            )
        except FlchainError as exc:
            return {"ok": False, "error": str(exc)}

    def _app_of(self, pid: int | None) -> LaunchedApp:
        """The app process asking, if this node started it (waiting briefly: it may ask before its
        launcher registered it) and, with a pin, runs the pinned bundle."""
        deadline = time.monotonic() + self.admit_wait
        with self._admitted:
            while pid not in self._apps and time.monotonic() < deadline:
                self._admitted.wait(deadline - time.monotonic())
            app = self._apps.get(pid) if pid is not None else None
        if app is None:
            raise FlchainError(f"process {pid} is not an app process this node started: nothing is signed")
        if self.app_hash is not None and app.fab_hash != self.app_hash:
            raise FlchainError(
                f"app bundle {app.fab_hash} is not the pinned --app-hash {self.app_hash}: nothing is signed"
            )
        return app

    def _same_ledger(self, body: dict[str, Any], what: str) -> None:
        """Refuse a statement for another chain or ledger than this node's."""
        if body.get("chain") != self.chain_id:
            raise FlchainError(
                f"{what} for chain {body.get('chain')!r:.24}: this node is on chain {self.chain_id}"
            )
        ledger = body.get("ledger")
        if not fields.is_address(ledger) or ledger.lower() != self.ledger.lower():
            raise FlchainError(
                f"{what} for another ledger: this node signs only for ModelLedger {self.ledger}"
            )

    def _sign_join(self, app: LaunchedApp, body: dict[str, Any]) -> str:
        """A join answer for the run the asking process serves, naming an existing task (or none yet)."""
        self._same_ledger(body, "a join answer")
        statement = JoinStatement(
            self.chain_id, self.ledger, body.get("task"), body.get("run"), body.get("node"), body.get("nonce")
        ).checked()
        if statement.run_id != app.run_id:
            raise FlchainError(
                f"a join answer for run {statement.run_id}: this app process serves run {app.run_id}"
            )
        if statement.task:
            self._task_record(statement.task)
        return sign_statement(self._account, statement)

    def _sign_update(self, body: dict[str, Any]) -> str:
        """An update claim for the round its task is training now."""
        self._same_ledger(body, "an update claim")
        task = fields.uint(body.get("task"), "the update claim's task")
        round_number = fields.uint(body.get("round"), "the update claim's round")
        update_hash = fields.hash_bytes(body.get("hash"), "the update claim's hash")
        weight = fields.uint(body.get("weight"), "the update claim's weight")
        current = self._task_record(task).next_round
        if round_number != current:
            raise FlchainError(
                f"an update claim for round {round_number} of task {task}: "
                f"the task is training round {current}"
            )
        self._signed[task] = (round_number, update_hash, weight)
        return sign_update(
            self._account, self.chain_id, self.ledger, task, round_number, update_hash, weight
        ).signature

    def _post_claim(self, body: dict[str, Any]) -> str:
        """Post on-chain (ModelLedger.postClaim) the update claim this agent signed last for its task,
        once per round, if this node posts claims (`--post-claims`); the transaction hash."""
        if not self.post_claims:
            raise FlchainError("this node does not post claims (start `flchain client --post-claims`)")
        self._same_ledger(body, "a posted claim")
        task = fields.uint(body.get("task"), "the posted claim's task")
        claim = (
            fields.uint(body.get("round"), "the posted claim's round"),
            fields.hash_bytes(body.get("hash"), "the posted claim's hash"),
            fields.uint(body.get("weight"), "the posted claim's weight"),
        )
        if self._signed.get(task) != claim:
            raise FlchainError(
                f"a posted claim must be the update claim this node signed last for task {task}"
            )
        if self._posted.get(task) == claim[0]:
            raise FlchainError(f"this node already posted its claim for round {claim[0]} of task {task}")
        ticket = fields.signature(body.get("ticket"), "the posted claim's ticket")
        signed = sign_update(self._account, self.chain_id, self.ledger, task, *claim)
        from fl_chain.chain import update_claims

        receipt = update_claims.post_claim(self.chain, self._account, signed, ticket)
        self._posted[task] = claim[0]
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def _task_record(self, task: int) -> Any:
        """The task's on-chain record; a one-line refusal for a task this ledger does not have."""
        from fl_chain.chain import ledger

        return ledger.task_record(self.chain, task)


def _peer_pid(sock: socket.socket) -> int | None:
    """The PID of the process at the other end of a Unix socket (Linux SO_PEERCRED), else None."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return pid


def forget_secrets(names: tuple[str, ...]) -> None:
    """Remove `names` from this process's environment, including the kernel's copy of the initial
    environment (/proc/PID/environ, readable by any process of the same user, shows the bytes the process
    started with, whatever os.environ says later), and make the process non-dumpable."""
    _zero_initial_environment(names)
    for name in names:
        os.environ.pop(name, None)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _zero_initial_environment(names: tuple[str, ...]) -> None:
    """Overwrite the values of `names` in the initial environment block (Linux) with "*": not with zero
    bytes, which readers of /proc/PID/environ (psutil) take for the end of the block."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(stat[47]), int(stat[48])  # fields 50 and 51: env_start, env_end
    except (OSError, IndexError, ValueError):
        return
    block = ctypes.string_at(start, end - start)
    offset = 0
    for entry in block.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name.decode(errors="replace") in names and value:
            ctypes.memset(start + offset + len(name) + 1, ord("*"), len(value))
        offset += len(entry) + 1
