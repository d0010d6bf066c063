"""ReputationCheckpoints wrapper: commitment mode's reputation checkpoints, their votes and proofs."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from fl_chain.chain import ledger, registry
from fl_chain.chain.client import ChainClient, poll
from fl_chain.chain.quorum import reason_text
from fl_chain.errors import FlchainError
from fl_chain.protocol.outcomes import CheckpointLeaves


@dataclass(frozen=True)
class CheckpointRecord:
    """ReputationCheckpoints.Checkpoint."""

    id: int
    root: bytes
    task: int
    through_round: int
    base: int
    leaf_count: int
    attestations: int
    disputes: int
    finalized: bool
    rejected: bool


def contract(client: ChainClient) -> Contract:
    """The ReputationCheckpoints contract, or a one-line error for deployments made before it existed."""
    if client.checkpoints is None:
        raise FlchainError(
            "commitment mode needs a deployment with the ReputationCheckpoints contract: redeploy"
        )
    return client.checkpoints


def propose(
    client: ChainClient, coordinator: LocalAccount, task: int, through_round: int, root: bytes, leaves: int
) -> tuple[int, TxReceipt]:
    """Propose a checkpoint; returns (its id, the receipt)."""
    receipt = client.transact(
        coordinator, contract(client).functions.propose(task, through_round, root, leaves)
    )
    event = client.events(contract(client), "CheckpointProposed", receipt)[0]
    return int(event["id"]), receipt


def get(client: ChainClient, checkpoint_id: int) -> CheckpointRecord:
    """One checkpoint's record (UnknownCheckpoint is a one-line error)."""
    raw = client.call(contract(client).functions.getCheckpoint(checkpoint_id))
    return CheckpointRecord(
        checkpoint_id, bytes(raw[0]), *(int(v) for v in raw[1:7]), bool(raw[7]), bool(raw[8])
    )


def latest(client: ChainClient, task: int) -> CheckpointRecord | None:
    """The task's latest finalized checkpoint, or None."""
    c = contract(client)
    if not c.functions.lastProposed(task).call():
        return None
    try:
        checkpoint_id = int(client.call(c.functions.latest(task))[0])
    except FlchainError:  # NoFinalizedCheckpoint
        return None
    return get(client, checkpoint_id)


def has_voted(client: ChainClient, checkpoint_id: int, validator: str) -> bool:
    """Whether a validator attested or disputed the checkpoint."""
    fn = contract(client).functions.hasVoted(checkpoint_id, Web3.to_checksum_address(validator))
    return bool(client.call(fn))


def attest(client: ChainClient, validator: LocalAccount, checkpoint_id: int, root: bytes) -> TxReceipt:
    """Attest that the validator's own fold gives `root`."""
    return client.transact(validator, contract(client).functions.attest(checkpoint_id, root))


def dispute(
    client: ChainClient, validator: LocalAccount, checkpoint_id: int, node: str, reason: str
) -> TxReceipt:
    """Dispute a checkpoint, naming a differing node (or the zero address) and why."""
    fn = contract(client).functions.dispute(
        checkpoint_id, Web3.to_checksum_address(node), reason_text(reason)
    )
    return client.transact(validator, fn)


def discount_vote(client: ChainClient, sender: LocalAccount, checkpoint_id: int, validator: str) -> TxReceipt:
    """Take the vote of an account that lost VALIDATOR_ROLE out of an unresolved checkpoint (anyone)."""
    fn = contract(client).functions.discountVote(checkpoint_id, Web3.to_checksum_address(validator))
    return client.transact(sender, fn)


def discount_all(client: ChainClient, sender: LocalAccount, validator: str) -> list[int]:
    """Discount every vote of a former validator on a checkpoint not yet finalized or rejected (from
    its CheckpointAttested and CheckpointDisputed events); returns the checkpoint ids."""
    who = Web3.to_checksum_address(validator)
    voted = {
        int(e["args"]["id"])
        for name in ("CheckpointAttested", "CheckpointDisputed")
        for e in client.logs(contract(client), name, validator=who)
    }
    done = []
    for checkpoint_id in sorted(voted):
        record = get(client, checkpoint_id)
        if not (record.finalized or record.rejected):
            discount_vote(client, sender, checkpoint_id, who)
            done.append(checkpoint_id)
    return done


def apply_suspension(
    client: ChainClient, sender: LocalAccount, task: int, node: str, reputation: int, proof: list[bytes]
) -> TxReceipt:
    """Suspend in the registry a node the task's latest finalized checkpoint records as suspended."""
    fn = contract(client).functions.applySuspension(task, Web3.to_checksum_address(node), reputation, proof)
    return client.transact(sender, fn)


def is_active(client: ChainClient, task: int, node: str, reputation: int, proof: list[bytes]) -> bool:
    """Whether the node is Active in the registry and in the latest finalized checkpoint (the contract
    checks the proof; a proof for another checkpoint is a one-line error: InvalidProof)."""
    fn = contract(client).functions.isActive(task, Web3.to_checksum_address(node), reputation, proof)
    return bool(client.call(fn))


def unapplied_suspensions(client: ChainClient, leaves: CheckpointLeaves) -> list[tuple[str, int]]:
    """(node, reputation) of each suspension the checkpoint records that the registry does not hold yet:
    the node is still Active and the registrar did not re-approve it in or after the block of the
    checkpoint's last folded round (the contract refuses those: ReinstatedSince; the next checkpoint
    folds the reinstatement)."""
    suspended = [leaf for leaf in leaves.leaves if not leaf[2]]
    if not suspended:
        return []
    nodes = [leaf[0] for leaf in suspended]
    active = registry.active_of(client, nodes)
    since = registry.activated_at(client, nodes)
    folded = ledger.get_round(client, leaves.task, leaves.through_round).block
    return [(node, value) for node, value, _ in suspended if active.get(node) and since[node] < folded]


def apply_suspensions(client: ChainClient, sender: LocalAccount, leaves: CheckpointLeaves) -> list[str]:
    """Suspend in the registry every suspension of the (finalized) checkpoint it does not hold yet
    (`unapplied_suspensions`); returns the nodes suspended."""
    done = []
    for node, value in unapplied_suspensions(client, leaves):
        _, proof = leaves.proof_of(node)
        apply_suspension(client, sender, leaves.task, node, value, proof)
        done.append(Web3.to_checksum_address(node))
    return done


def verifies(
    client: ChainClient, task: int, node: str, reputation: int, active: bool, proof: list[bytes]
) -> bool:
    """Whether the contract accepts (node, reputation, active) with `proof` against the task's latest
    finalized checkpoint."""
    return bool(client.call(contract(client).functions.verify(task, node, reputation, active, proof)))


def proposed_ids(client: ChainClient, task: int) -> list[int]:
    """The ids of every checkpoint proposed for a task (CheckpointProposed events), in chain order."""
    return [int(e["args"]["id"]) for e in client.logs(contract(client), "CheckpointProposed", task=task)]


def wait_finalized(client: ChainClient, checkpoint_id: int, timeout: float) -> CheckpointRecord:
    """Block until the checkpoint is finalized; a one-line error if it is rejected or time runs out."""

    def finalized() -> CheckpointRecord | None:
        record = get(client, checkpoint_id)
        if record.finalized:
            return record
        if record.rejected:
            raise FlchainError(
                f"reputation checkpoint {checkpoint_id} (task {record.task}, through round "
                f"{record.through_round}) was disputed by {record.disputes} validators: not in effect "
                "(see flchain audit)"
            )
        return None

    late = f"reputation checkpoint {checkpoint_id} was not finalized by the validators within {timeout:.0f} s"
    return poll(finalized, timeout, late)
