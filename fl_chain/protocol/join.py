"""The join handshake: the server sends a fresh nonce, the ClientApp signs a statement binding chain
id, run id, node id and nonce with its Ethereum key (EIP-191 personal message), and the server recovers
the address. Flower's own node authentication needs TLS and NIST curves, so this lives in the app."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from fl_chain.protocol.fields import is_address, is_signature


def challenge_text(chain_id: int, run_id: int, node_id: int, nonce: str) -> str:
    """The exact statement a node signs."""
    return f"flchain join | chain {chain_id} | run {run_id} | node {node_id} | nonce {nonce}"


def sign_challenge(account: LocalAccount, chain_id: int, run_id: int, node_id: int, nonce: str) -> str:
    """Signature (0x hex) of the statement for this chain, run, node and nonce."""
    message = encode_defunct(text=challenge_text(chain_id, run_id, node_id, nonce))
    return "0x" + account.sign_message(message).signature.hex().removeprefix("0x")


def recover_signer(chain_id: int, run_id: int, node_id: int, nonce: str, signature: str) -> str | None:
    """Address that signed the statement, or None if the signature is malformed."""
    message = encode_defunct(text=challenge_text(chain_id, run_id, node_id, nonce))
    try:
        return str(Account.recover_message(message, signature=signature))
    except Exception:  # malformed signatures raise assorted errors from eth_keys
        return None


@dataclass
class Challenges:
    """Nonces issued in this run: each can be answered once, by the node it was sent to."""

    chain_id: int
    run_id: int
    _pending: dict[int, str] = field(default_factory=dict)

    def issue(self, node_id: int) -> str:
        """A fresh nonce for a node (replaces any earlier unanswered one)."""
        nonce = secrets.token_hex(16)
        self._pending[node_id] = nonce
        return nonce

    def verify(self, node_id: int, claimed: object, signature: object) -> tuple[str | None, str]:
        """(address, "") if the node signed its current nonce with the key of `claimed`,
        else (None, reason). A nonce is consumed by the first answer, right or wrong. Answers are
        attacker-controlled: anything but a 0x address and a 65-byte 0x signature is refused by its
        form, and no reason quotes more of it than an address."""
        nonce = self._pending.pop(node_id, None)
        if nonce is None:
            return None, "no challenge outstanding for this node (replayed answer)"
        if not is_address(claimed):
            return None, "malformed address (expected 0x and 40 hex digits)"
        if not is_signature(signature):
            return None, "malformed signature (expected 0x and 130 hex digits)"
        signer = recover_signer(self.chain_id, self.run_id, node_id, nonce, signature)
        if signer is None:
            return None, "malformed signature"
        if signer.lower() != claimed.lower():
            return None, f"signature is from {signer}, not the claimed {claimed} (replay or wrong key)"
        return signer, ""
