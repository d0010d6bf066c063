"""A node's standing in a commitment-mode task: its leaf in the latest finalized reputation checkpoint,
with the Merkle proof the ReputationCheckpoints contract checks, which the node can present anywhere."""

from __future__ import annotations

from dataclasses import dataclass

from fl_chain.chain import checkpoints
from fl_chain.chain.client import ChainClient
from fl_chain.chain.published import fetch_checkpoint
from fl_chain.errors import FlchainError


@dataclass(frozen=True)
class NodeProof:
    """A node's leaf in its task's latest finalized checkpoint, with the proof the contract checks."""

    checkpoint: int
    through_round: int
    node: str
    reputation: int
    active: bool
    proof: list[bytes]

    def to_json(self) -> dict:
        """What a node presents (ReputationCheckpoints.isActive / verify arguments)."""
        return {
            "checkpoint": self.checkpoint,
            "through_round": self.through_round,
            "node": self.node,
            "reputation": self.reputation,
            "active": self.active,
            "proof": ["0x" + p.hex() for p in self.proof],
        }


def node_proof(client: ChainClient, task: int, node: str) -> NodeProof:
    """A node's proof against the task's latest finalized checkpoint, fetched from the published leaves
    and checked by the contract; a one-line error if there is none or the node has no leaf."""
    record = checkpoints.latest(client, task)
    if record is None:
        raise FlchainError(
            f"task {task} has no finalized reputation checkpoint (is it a commitment-mode task?)"
        )
    leaves = fetch_checkpoint(client, record)
    (address, value, active), proof = leaves.proof_of(node)
    if not checkpoints.verifies(client, task, address, value, active, proof):
        raise FlchainError(
            f"the published leaves of checkpoint {record.id} do not verify on-chain for {address}"
        )
    return NodeProof(record.id, record.through_round, address, value, active, proof)
