"""A node's recourse over the update it signed, on ModelLedger: post a claim on it before the round is
committed (from then on the commit may not leave the node out nor record it missed without the validators
disputing the round), complain after the commit that it was left out (within the complaint window), and
check that a verified round's updates root includes it. Reads go through `ChainClient.call`, writes through
`ChainClient.transact`."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from web3.types import EventData, TxReceipt

from fl_chain.chain.client import ChainClient
from fl_chain.protocol.update_signing import SignedUpdate, UpdateLeaf


def omission_complaints(client: ChainClient, task: int) -> list[EventData]:
    """The nodes' complaints that their signed update was left out of a round (UpdateOmitted)."""
    return client.logs(client.ledger, "UpdateOmitted", task=task)


def is_committed_update(
    client: ChainClient, task: int, round_number: int, leaf: UpdateLeaf, proof: list[bytes]
) -> bool:
    """Whether the chain's updates root of the round includes `leaf` (checked by the contract)."""
    fn = client.ledger.functions.isCommittedUpdate(task, round_number, *leaf.row(), proof)
    return bool(client.call(fn))


def complaint_window(client: ChainClient) -> int:
    """Seconds after a round's commit that omission complaints (and disputes of a finalized round) count."""
    return int(client.call(client.ledger.functions.complaintWindow()))


def complaint_deadline(client: ChainClient, task: int, round_number: int) -> int:
    """The last block timestamp at which a node may complain about the round, and a finalized round may
    still be disputed: the commit's timestamp plus the complaint window (one-line error if never
    committed)."""
    return int(client.call(client.ledger.functions.complaintDeadline(task, round_number)))


def complaint_window_open(client: ChainClient, task: int, round_number: int) -> bool:
    """Whether the latest block is still within the round's complaint window."""
    latest = client.w3.eth.get_block("latest")["timestamp"]
    return int(latest) <= complaint_deadline(client, task, round_number)


def complain_omitted(client: ChainClient, node: LocalAccount, signed: SignedUpdate, ticket: str) -> TxReceipt:
    """Post a node's signed update on-chain as left out of its verified round (UpdateOmitted), with the
    coordinator's ticket that sampled the node for that round; reverts ComplaintWindowClosed after the
    round's complaint deadline."""
    fn = client.ledger.functions.complainOmitted(
        signed.task,
        signed.round,
        signed.update_hash,
        signed.weight,
        bytes.fromhex(signed.signature[2:]),
        bytes.fromhex(ticket.removeprefix("0x")),
    )
    return client.transact(node, fn)


def post_claim(client: ChainClient, node: LocalAccount, signed: SignedUpdate, ticket: str) -> TxReceipt:
    """Post a node's claim on its update for the round its task is training now (ClaimPosted), with the
    coordinator's ticket that sampled the node: from then on, the commit may not omit the node nor record
    it as missed without the validators disputing the round."""
    fn = client.ledger.functions.postClaim(
        signed.task,
        signed.round,
        signed.update_hash,
        signed.weight,
        bytes.fromhex(ticket.removeprefix("0x")),
    )
    return client.transact(node, fn)


def posted_claims(
    client: ChainClient, task: int, round_number: int, before_block: int | None = None
) -> dict[str, tuple[bytes, int]]:
    """Node (lowercase) -> (update hash, weight) of the claims posted for a round (ClaimPosted, one
    eth_getLogs), only those mined before block `before_block` if given; a node that posted twice is
    shown with its last claim."""
    end = None if before_block is None else before_block - 1
    logs = client.logs(client.ledger, "ClaimPosted", end=end, task=task, round=round_number)
    return {
        str(e["args"]["node"]).lower(): (bytes(e["args"]["updateHash"]), int(e["args"]["weight"]))
        for e in logs
    }
