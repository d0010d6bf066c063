"""The join handshake: the server sends a fresh nonce, the node signs a statement binding chain id,
ModelLedger address, task (0 while the coordinator has none yet), run id, node id and nonce with its
Ethereum key (EIP-191 personal message), and the server recovers the address. Naming the ledger means an
answer given to one coordinator cannot be relayed to a gate of another ledger (or chain, or task). Flower's
own node authentication needs TLS and NIST curves, so this lives in the app."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fl_chain.errors import FlchainError
from fl_chain.protocol.fields import is_address, is_signature, is_uint

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

# A nonce is text a coordinator chooses and a node signs: letters and digits only, so it can never make
# the statement read as another one (no "|", no spaces).
_NONCE = re.compile(r"[0-9A-Za-z]{8,128}")
_U64 = 2**64 - 1


@dataclass(frozen=True)
class JoinStatement:
    """What a node signs to join: this chain, this ledger, this task, this run, this node id, this nonce."""

    chain_id: int
    ledger: str
    task: int
    run_id: int
    node_id: int
    nonce: str

    def checked(self) -> JoinStatement:
        """Self, or a one-line FlchainError naming the malformed field (nothing malformed is signed)."""
        for name in ("chain_id", "task", "run_id", "node_id"):
            if not is_uint(getattr(self, name), _U64):
                raise FlchainError(f"join statement field {name!r} is not an integer in 0..2**64-1")
        if not is_address(self.ledger):
            raise FlchainError("join statement field 'ledger' is not an address (0x + 40 hex digits)")
        if not isinstance(self.nonce, str) or _NONCE.fullmatch(self.nonce) is None:
            raise FlchainError("join statement field 'nonce' is not 8-128 letters and digits")
        return self

    def text(self) -> str:
        """The exact statement a node signs (the ledger address in lowercase: one spelling)."""
        return (
            f"flchain join | chain {self.chain_id} | ledger {self.ledger.lower()} | task {self.task} | "
            f"run {self.run_id} | node {self.node_id} | nonce {self.nonce}"
        )


def sign_statement(account: LocalAccount, statement: JoinStatement) -> str:
    """Signature (0x hex) of a well-formed join statement."""
    from eth_account.messages import encode_defunct

    message = encode_defunct(text=statement.checked().text())
    return "0x" + account.sign_message(message).signature.hex().removeprefix("0x")


def recover_signer(statement: JoinStatement, signature: str) -> str | None:
    """Address that signed the statement, or None if the signature is malformed."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    try:
        message = encode_defunct(text=statement.checked().text())
        return str(Account.recover_message(message, signature=signature))
    except Exception:  # malformed signatures raise assorted errors from eth_keys
        return None


@dataclass
class Challenges:
    """Nonces issued in this run for one ledger: each can be answered once, by the node it was sent to,
    for the task that was current when it was issued (`task`, 0 while the coordinator has none yet)."""

    chain_id: int
    run_id: int
    ledger: str
    task: int = 0
    _pending: dict[int, JoinStatement] = field(default_factory=dict)

    def issue(self, node_id: int) -> JoinStatement:
        """The statement a node is asked to sign, with a fresh nonce (replaces any earlier unanswered
        one); its fields travel in the challenge message."""
        statement = JoinStatement(
            self.chain_id, self.ledger, self.task, self.run_id, node_id, secrets.token_hex(16)
        )
        self._pending[node_id] = statement
        return statement

    def verify(self, node_id: int, claimed: object, signature: object) -> tuple[str | None, str]:
        """(address, "") if the node signed its current statement with the key of `claimed`,
        else (None, reason). A nonce is consumed by the first answer, right or wrong. Answers are
        attacker-controlled: anything but a 0x address and a 65-byte 0x signature is refused by its
        form, and no reason quotes more of it than an address."""
        statement = self._pending.pop(node_id, None)
        if statement is None:
            return None, "no challenge outstanding for this node (replayed answer)"
        if not is_address(claimed):
            return None, "malformed address (expected 0x and 40 hex digits)"
        if not is_signature(signature):
            return None, "malformed signature (expected 0x and 130 hex digits)"
        signer = recover_signer(statement, signature)
        if signer is None:
            return None, "malformed signature"
        if signer.lower() != claimed.lower():
            return None, (
                f"signature is from {signer}, not the claimed {claimed} (signed for another ledger, "
                "chain, task, run or nonce, or with another key)"
            )
        return signer, ""
