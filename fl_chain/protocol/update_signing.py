"""A node's signature on its update, and the leaf that records the update in a round's commitment.

A node signs (chain id, ledger address, task, round, update hash, weight) with its registered key, so
its claim "this is what I sent, with this weight, for this round of this task on this chain" can be
checked by anyone holding the update blob, and shown to a contract: the digest is signed as an
EIP-191 personal message, which OpenZeppelin's `MessageHashUtils.toEthSignedMessageHash` and
`ECDSA.recover` reproduce on-chain. The update hash is the model hash of the node's trained arrays
(protocol/model_bytes.hash_arrays), the same hash a blob of those arrays is stored under.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from fl_chain.errors import FlchainError
from fl_chain.protocol import fields

UPDATE_DOMAIN = keccak(text="flchain.update.v1")  # a signature for anything else never matches
TICKET_DOMAIN = keccak(text="flchain.ticket.v1")  # a coordinator's ticket sampling a node for a round
LEAF_TYPES = ("address", "bytes32", "uint256", "uint256")  # node, update hash, weight, score


@dataclass(frozen=True)
class SignedUpdate:
    """What a node signed for one round, and its signature (0x + 130 hex digits)."""

    chain_id: int
    ledger: str
    task: int
    round: int
    update_hash: bytes
    weight: int
    signature: str

    def digest(self) -> bytes:
        """The 32 bytes the node signs (before the EIP-191 prefix)."""
        return update_digest(self.chain_id, self.ledger, self.task, self.round, self.update_hash, self.weight)

    def signer(self) -> str:
        """The checksummed address that signed, or a one-line error for a malformed signature."""
        try:
            return Account.recover_message(encode_defunct(primitive=self.digest()), signature=self.signature)
        except Exception as exc:  # eth_keys raises several kinds for a bad length, v or s
            raise FlchainError(f"a malformed update signature ({type(exc).__name__})") from None


def update_digest(
    chain_id: int, ledger: str, task: int, round_number: int, update_hash: bytes, weight: int
) -> bytes:
    """keccak256(abi.encode(domain, chainId, ledger, task, round, updateHash, weight))."""
    if len(update_hash) != 32:
        raise FlchainError(f"an update hash has 32 bytes, not {len(update_hash)}")
    if weight < 0:
        raise FlchainError(f"an update's weight must not be negative (got {weight})")
    return keccak(
        encode(
            ["bytes32", "uint256", "address", "uint256", "uint256", "bytes32", "uint256"],
            [UPDATE_DOMAIN, chain_id, to_checksum_address(ledger), task, round_number, update_hash, weight],
        )
    )


def sign_update(
    account: LocalAccount,
    chain_id: int,
    ledger: str,
    task: int,
    round_number: int,
    update_hash: bytes,
    weight: int,
) -> SignedUpdate:
    """The node's signature on its update for one round."""
    digest = update_digest(chain_id, ledger, task, round_number, update_hash, weight)
    signature = account.sign_message(encode_defunct(primitive=digest)).signature
    return SignedUpdate(
        chain_id,
        to_checksum_address(ledger),
        task,
        round_number,
        update_hash,
        weight,
        "0x" + bytes(signature).hex(),
    )


def ticket_digest(chain_id: int, ledger: str, task: int, round_number: int, node: str) -> bytes:
    """keccak256(abi.encode(TICKET_DOMAIN, chainId, ledger, task, round, node)): ModelLedger.ticketDigest."""
    return keccak(
        encode(
            ["bytes32", "uint256", "address", "uint256", "uint256", "address"],
            [
                TICKET_DOMAIN,
                chain_id,
                to_checksum_address(ledger),
                task,
                round_number,
                to_checksum_address(node),
            ],
        )
    )


def sign_ticket(
    coordinator: LocalAccount, chain_id: int, ledger: str, task: int, round_number: int, node: str
) -> str:
    """The coordinator's ticket sampling `node` for one round (0x + 130 hex digits): with it, and only
    with it, the node can complain on-chain that its update was left out (ModelLedger.complainOmitted)."""
    digest = ticket_digest(chain_id, ledger, task, round_number, node)
    return "0x" + bytes(coordinator.sign_message(encode_defunct(primitive=digest)).signature).hex()


@dataclass(frozen=True)
class UpdateLeaf:
    """One accepted update in a round's commitment: who, which update, with what weight and score."""

    node: str
    update_hash: bytes
    weight: int
    score: int

    def row(self) -> tuple[str, bytes, int, int]:
        """The ABI values of the leaf, in LEAF_TYPES order."""
        return (to_checksum_address(self.node), self.update_hash, self.weight, self.score)


@dataclass(frozen=True)
class RoundContext:
    """What a signed update must be for: this chain, this ledger, this task and round."""

    chain_id: int
    ledger: str
    task: int
    round: int


def parse_claim(claim: Mapping[str, object], context: RoundContext) -> SignedUpdate:
    """The SignedUpdate a reply's claim (its "hash", "weight" and "signature") stands for in this round;
    a one-line FlchainError naming the malformed field otherwise. The signature is not checked here."""
    return SignedUpdate(
        context.chain_id,
        context.ledger,
        context.task,
        context.round,
        fields.hash_bytes(claim.get("hash"), "the update claim's hash"),
        fields.uint(claim.get("weight"), "the update claim's weight"),
        fields.signature(claim.get("signature"), "the update claim's signature"),
    )


def claim_signed_by(claim: Mapping[str, object], context: RoundContext, sender: str) -> SignedUpdate | None:
    """The claim as a SignedUpdate if `sender` signed it for this round (whatever update it names), else
    None: what a verified round discloses about a reply it did not aggregate."""
    try:
        signed = parse_claim(claim, context)
        return signed if signed.signer().lower() == sender.lower() else None
    except FlchainError:
        return None


def check_claim(
    claim: Mapping[str, object], context: RoundContext, sender: str, update_hash: bytes, weight: int
) -> SignedUpdate:
    """The claim a reply carries (its "hash", "weight" and "signature"), checked against the update it
    came with and the round it is for; a one-line FlchainError saying what differs otherwise."""
    signed = parse_claim(claim, context)
    if signed.update_hash != update_hash:
        raise FlchainError("the signed update hash is not the hash of the update sent")
    if signed.weight != weight:
        raise FlchainError(f"the signed weight {signed.weight} is not the claimed {weight}")
    signer = signed.signer()
    if signer.lower() != sender.lower():
        raise FlchainError(f"the update is signed by {signer}, not by the sender (or for another round)")
    return signed
