"""Who signs for the flchain mod. A node started by `flchain client` keeps its decrypted key in the
`flchain client` process; the mod, running inside app code the coordinator shipped, asks that process's
signing agent (runners/signing_agent.py) over a Unix socket whose path is in SIGNER_ENV, and the agent
signs only flchain's own statements (a join answer, an update claim) for its own chain and ledger, and
with `--post-claims` posts the update claim it signed on-chain (ModelLedger.postClaim). The
app process never holds the key or the keystore password.

A simulated node (Simulation Engine: the demo, a user's `flwr run` with a simulated-keys file) and a plain
`flower-supernode` given FLCHAIN_KEY_PASSWORD sign in process (`LocalSigner`): there the user runs the
app code themselves, or chose to hand it the password.

The wire format is one JSON object per line each way; this module imports nothing heavy (no web3, no
eth-account), since Flower starts a fresh process for every message."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from fl_chain.errors import FlchainError
from fl_chain.protocol.join import JoinStatement

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from fl_chain.chain.client import ChainClient
    from fl_chain.protocol.update_signing import SignedUpdate

SIGNER_ENV = "FLCHAIN_SIGNER"  # path of the agent's socket (a path, not a secret)
MAX_LINE = 4096  # bytes of one request or answer: statements are short


class Signer(Protocol):
    """What the flchain mod needs from whoever holds the node's key."""

    @property
    def address(self) -> str:
        """The node's address (checksummed)."""

    def sign_join(self, statement: JoinStatement) -> str:
        """The signature of a join statement (0x + 130 hex digits)."""

    def sign_update(
        self, chain_id: int, ledger: str, task: int, round_number: int, update_hash: bytes, weight: int
    ) -> SignedUpdate:
        """The node's signed claim on its update for one round of one task."""

    def post_claim(self, signed: SignedUpdate, ticket: str) -> str:
        """Post a claim this signer just signed on-chain (ModelLedger.postClaim) with the coordinator's
        ticket; the transaction hash, or a one-line FlchainError."""


class LocalSigner:
    """A key held in this process (simulated nodes, a plain flower-supernode with the password)."""

    def __init__(self, account: LocalAccount, chain: Callable[[], ChainClient] | None = None) -> None:
        self._account = account
        self._chain = chain  # opened only when a claim is posted (web3 is slow to import)

    @property
    def address(self) -> str:
        """The key's address."""
        return self._account.address

    def sign_join(self, statement: JoinStatement) -> str:
        """Sign a well-formed join statement."""
        from fl_chain.protocol.join import sign_statement

        return sign_statement(self._account, statement)

    def sign_update(
        self, chain_id: int, ledger: str, task: int, round_number: int, update_hash: bytes, weight: int
    ) -> SignedUpdate:
        """Sign an update claim (protocol/update_signing.py)."""
        from fl_chain.protocol.update_signing import sign_update

        return sign_update(self._account, chain_id, ledger, task, round_number, update_hash, weight)

    def post_claim(self, signed: SignedUpdate, ticket: str) -> str:
        """Send the postClaim transaction from this key."""
        if self._chain is None:
            raise FlchainError("this signer has no chain connection to post claims with")
        from fl_chain.chain import update_claims

        receipt = update_claims.post_claim(self._chain(), self._account, signed, ticket)
        return "0x" + bytes(receipt["transactionHash"]).hex()


class AgentSigner:
    """The signing agent of `flchain client`, reached through its Unix socket."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._address: str | None = None

    @property
    def address(self) -> str:
        """The node's address, as the agent gives it (asked once per process)."""
        if self._address is None:
            self._address = str(self.request({"statement": "address"})["address"])
        return self._address

    def sign_join(self, statement: JoinStatement) -> str:
        """The agent's signature of a join statement."""
        s = statement.checked()
        answer = self.request(
            {
                "statement": "join",
                "chain": s.chain_id,
                "ledger": s.ledger,
                "task": s.task,
                "run": s.run_id,
                "node": s.node_id,
                "nonce": s.nonce,
            }
        )
        return str(answer["signature"])

    def sign_update(
        self, chain_id: int, ledger: str, task: int, round_number: int, update_hash: bytes, weight: int
    ) -> SignedUpdate:
        """The agent's signature of an update claim, as a SignedUpdate."""
        from fl_chain.protocol.update_signing import SignedUpdate

        answer = self.request(
            {
                "statement": "update",
                "chain": chain_id,
                "ledger": ledger,
                "task": task,
                "round": round_number,
                "hash": "0x" + update_hash.hex(),
                "weight": weight,
            }
        )
        signature = str(answer["signature"])
        return SignedUpdate(
            chain_id, str(answer["ledger"]), task, round_number, update_hash, weight, signature
        )

    def post_claim(self, signed: SignedUpdate, ticket: str) -> str:
        """Ask the agent to post the claim it signed (only `flchain client --post-claims` does)."""
        answer = self.request(
            {
                "statement": "claim",
                "chain": signed.chain_id,
                "ledger": signed.ledger,
                "task": signed.task,
                "round": signed.round,
                "hash": "0x" + signed.update_hash.hex(),
                "weight": signed.weight,
                "ticket": ticket,
            }
        )
        return str(answer["tx"])

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return the agent's answer; its refusal as a one-line FlchainError."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(json.dumps(body).encode() + b"\n")
                line = _read_line(sock)
        except OSError as exc:
            raise FlchainError(
                f"the node's signing agent at {self.path} did not answer ({exc.strerror or exc}): is "
                "`flchain client` running?"
            ) from None
        try:
            answer = json.loads(line)
        except ValueError:
            raise FlchainError(
                f"the node's signing agent at {self.path} answered something not JSON"
            ) from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            reason = answer.get("error") if isinstance(answer, dict) else None
            raise FlchainError(f"the node's signing agent refused: {reason or 'no reason given'}")
        return answer


def _read_line(sock: socket.socket) -> bytes:
    """One newline-terminated line (at most MAX_LINE bytes)."""
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(MAX_LINE)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise OSError("answer too long")
    return data.split(b"\n", 1)[0]


def agent_signer() -> AgentSigner | None:
    """The agent this process was started for (SIGNER_ENV), if any."""
    path = os.environ.get(SIGNER_ENV)
    return AgentSigner(path) if path else None
