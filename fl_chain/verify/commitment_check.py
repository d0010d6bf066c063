"""Checks of commitment-mode rounds and reputation checkpoints, from what the chain holds and the
published leaves: what validators run before they attest, and what `flchain audit` re-runs.

A round: its outcome leaves (fetched by the committed root) give that root, name this chain, ledger,
task, round, model and parent, count as many leaves as the commit says, and name only nodes Active in
the registry at the block before the commit. A checkpoint: the task's outcome leaves of rounds 1 to its
last round, folded with the Reputation parameters (protocol/reputation_fold.py), give its root. Leaves that
cannot be read here give no verdict (Unavailable), as for verified rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import to_checksum_address

from fl_chain.chain import checkpoints, ledger, quorum, registry
from fl_chain.chain.client import ChainClient
from fl_chain.chain.published import History, Unavailable, fetch_checkpoint
from fl_chain.errors import FlchainError
from fl_chain.protocol.outcomes import OUTCOME_NAMES, CheckpointLeaves, RoundOutcomes
from fl_chain.protocol.reputation_fold import checkpoint_of

ZERO_ADDRESS = "0x" + "00" * 20


def round_differences(client: ChainClient, outcomes: RoundOutcomes, task: int, rnd: int) -> list[str]:
    """What a round's (root-checked) outcome leaves say that the chain contradicts."""
    record = ledger.get_round(client, task, rnd)
    parent = (
        ledger.get_round(client, task, ledger.parent_round(client, task, rnd)).model_hash
        if rnd > 0
        else bytes(32)
    )
    out = [
        f"the outcomes' {what} is {said}, the chain's {actual}"
        for what, said, actual in (
            ("chain id", outcomes.chain_id, client.deployment.chain_id),
            ("ledger", outcomes.ledger.lower(), str(client.ledger.address).lower()),
            ("task", outcomes.task, task),
            ("round", outcomes.round, rnd),
            ("model", outcomes.model, "0x" + record.model_hash.hex()),
            ("parent", outcomes.parent, "0x" + parent.hex()),
            ("leaf count", len(outcomes.outcomes), record.participant_count),
        )
        if said != actual
    ]
    nodes = sorted({o.node for o in outcomes.outcomes})
    active = registry.active_of(client, nodes, record.block - 1)
    out += [
        f"{o.node} ({OUTCOME_NAMES[o.kind]}) was not Active before the commit"
        for o in outcomes.outcomes
        if not active[o.node]
    ]
    return out


@dataclass
class CheckpointCheck:
    """The outcome of re-computing one checkpoint."""

    record: checkpoints.CheckpointRecord
    expected: CheckpointLeaves | None = None
    difference: str = ""
    node: str = ZERO_ADDRESS  # a node whose leaf differs, if one can be named
    waiting: str = ""  # why an attestation must wait (its base is not finalized yet), if it must

    @property
    def ok(self) -> bool:
        """Whether the validator's fold gives the proposed root."""
        return self.expected is not None and not self.difference


def check_checkpoint(
    client: ChainClient, checkpoint_id: int, history: History, validator: str | None = None
) -> CheckpointCheck:
    """Re-compute checkpoint `checkpoint_id` of `history`'s task. Unavailable if a round's leaves cannot
    be read here; a leaf set that does not match its round's root is a difference, and so is a folded
    round (since the base checkpoint) that the validators disputed, or that `validator` itself did."""
    record = checkpoints.get(client, checkpoint_id)
    out = CheckpointCheck(record)
    base = checkpoints.get(client, record.base) if record.base else None
    if base is not None and base.rejected:
        out.difference = f"it folds from checkpoint {record.base}, which the validators rejected"
        return out
    if base is not None and not base.finalized:  # the contract refuses an attestation until then
        out.waiting = f"checkpoint {checkpoint_id} folds from checkpoint {record.base}: not finalized yet"
    for rnd in range((base.through_round if base else 0) + 1, record.through_round + 1):
        mine = validator is not None and quorum.has_disputed(client, record.task, rnd, validator)
        if mine or quorum.is_disputed(client, record.task, rnd):
            out.difference = f"it folds round {rnd}, which {'I' if mine else 'the validators'} disputed"
            return out
    try:
        model = history.fold(record.through_round)
    except Unavailable:
        raise
    except FlchainError as exc:
        out.difference = f"the leaves of a folded round do not check: {exc}"
        return out
    chain_id, ledger_address = client.deployment.chain_id, str(client.ledger.address)
    out.expected = checkpoint_of(model, chain_id, ledger_address, record.task, record.through_round)
    if out.expected.root() != record.root or len(out.expected.leaves) != record.leaf_count:
        out.difference = (
            f"the outcome leaves of rounds 1-{record.through_round} fold to root "
            f"0x{out.expected.root().hex()[:16]}… ({len(out.expected.leaves)} leaves), "
            f"not the proposed 0x{record.root.hex()[:16]}… ({record.leaf_count})"
        )
        out.node = _first_differing_node(client, record, out.expected)
    return out


def _first_differing_node(client: ChainClient, record, expected: CheckpointLeaves) -> str:
    """The first node whose published leaf differs from the re-computed one (zero if the published
    leaves cannot be read or checked)."""
    try:
        published = fetch_checkpoint(client, record)
    except FlchainError:
        return ZERO_ADDRESS
    mine = {leaf[0].lower(): leaf for leaf in expected.leaves}
    theirs = {leaf[0].lower(): leaf for leaf in published.leaves}
    for node in sorted(set(mine) | set(theirs)):
        if mine.get(node) != theirs.get(node):
            return to_checksum_address(node)
    return ZERO_ADDRESS
