"""Checks of commitment-mode rounds and reputation checkpoints, from what the chain holds and the
published leaves: what validators run before they attest, and what `flchain audit` re-runs.

A round: its outcome leaves (fetched by the committed root) give that root, name this chain, ledger,
task, round, model and parent, count as many leaves as the commit says, and name only nodes Active in
the registry at the block before the commit. A checkpoint: the task's outcome leaves of rounds 1 to its
last round, folded with the Reputation parameters (fl/reputation_fold.py), give its root. Leaves that
cannot be read here give no verdict (Unavailable), as for verified rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from fl_chain.chain import checkpoints, ledger, quorum, registry
from fl_chain.chain.client import NODE_STATUS, ChainClient
from fl_chain.chain.reputation import BATCH, has_function
from fl_chain.errors import FlchainError
from fl_chain.protocol.outcomes import (
    MAX_DOCUMENT_BYTES,
    OUTCOME_NAMES,
    CheckpointLeaves,
    RoundOutcomes,
    parse_checkpoint,
    parse_outcomes,
)
from fl_chain.protocol.reputation_fold import checkpoint_of, fold_round, new_fold
from fl_chain.protocol.reputation_model import ReputationModel
from fl_chain.verify.round_check import Unavailable, manifest_uri, read_published

ZERO_ADDRESS = "0x" + "00" * 20


def reputation_params(client: ChainClient) -> tuple[int, int, int, int, int]:
    """The Reputation contract's parameters (its struct order), which every fold uses."""
    return tuple(int(v) for v in client.call(client.reputation.functions.parameters()))


def fetch_outcomes(client: ChainClient, task: int, round_number: int) -> RoundOutcomes:
    """A commitment-mode round's outcome leaves, checked to give the chain's root. Unavailable if they
    cannot be fetched; a one-line FlchainError if they are not the committed ones."""
    root = ledger.outcomes_root(client, task, round_number)
    if root is None:
        raise FlchainError(f"round {round_number} of task {task} is not a commitment-mode round")
    uri = manifest_uri(client, task, round_number, root)
    outcomes = parse_outcomes(read_published(uri, MAX_DOCUMENT_BYTES), uri)
    if outcomes.root() != root:
        raise FlchainError(
            f"{uri}: its leaves give root 0x{outcomes.root().hex()}, the chain has 0x{root.hex()}"
        )
    return outcomes


@dataclass
class History:
    """A task's outcome leaves, fetched once each, and the fold through the newest round folded so far:
    a checkpoint folds every round from round 1, but consecutive checkpoints only fold the rounds in
    between (a validator's work per checkpoint does not grow with the task's age)."""

    client: ChainClient
    task: int
    rounds: dict[int, RoundOutcomes] = field(default_factory=dict)
    _folded: tuple[tuple, int, ReputationModel] | None = None  # (params, through round, fold)

    def outcomes(self, round_number: int) -> RoundOutcomes:
        """One round's checked outcomes (see fetch_outcomes)."""
        if round_number not in self.rounds:
            self.rounds[round_number] = fetch_outcomes(self.client, self.task, round_number)
        return self.rounds[round_number]

    def fold(self, params: tuple[int, int, int, int, int], through_round: int) -> ReputationModel:
        """The fold of rounds 1..through_round (a copy: the caller may change it)."""
        start, model = 1, new_fold(params)
        if self._folded is not None and self._folded[0] == tuple(params) and self._folded[1] <= through_round:
            start, model = self._folded[1] + 1, _copy(self._folded[2])
        for rnd in range(start, through_round + 1):
            fold_round(model, self.outcomes(rnd))
        self._folded = (tuple(params), through_round, _copy(model))
        for rnd in [r for r in self.rounds if r <= through_round]:  # folded: a long run's memory stays flat
            del self.rounds[rnd]
        return model


def _copy(model: ReputationModel) -> ReputationModel:
    return ReputationModel(model.params, dict(model.values), dict(model.active))


def round_differences(client: ChainClient, outcomes: RoundOutcomes, task: int, rnd: int) -> list[str]:
    """What a round's (root-checked) outcome leaves say that the chain contradicts."""
    record = ledger.get_round(client, task, rnd)
    parent = ledger.get_round(client, task, rnd - 1).model_hash if rnd > 0 else bytes(32)
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
    active = _active_at(client, nodes, record.block - 1)
    out += [
        f"{o.node} ({OUTCOME_NAMES[o.kind]}) was not Active before the commit"
        for o in outcomes.outcomes
        if not active[o.node]
    ]
    return out


def _active_at(client: ChainClient, nodes: list[str], block: int) -> dict[str, bool]:
    """Whether each node was Active at `block`: one batched view call per 1,000 nodes where the
    registry has `statusesOf`, one call per node on older deployments."""
    if not has_function(client.registry, "statusesOf"):
        return {n: registry.is_active(client, n, block) for n in nodes}
    out: dict[str, bool] = {}
    for start in range(0, len(nodes), BATCH):
        chunk = nodes[start : start + BATCH]
        values = client.call(client.registry.functions.statusesOf(chunk), block)
        out.update({n: NODE_STATUS[v] == "Active" for n, v in zip(chunk, values, strict=True)})
    return out


@dataclass
class CheckpointCheck:
    """The outcome of re-computing one checkpoint."""

    record: checkpoints.CheckpointRecord
    expected: CheckpointLeaves | None = None
    difference: str = ""
    node: str = ZERO_ADDRESS  # a node whose leaf differs, if one can be named

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
    for rnd in range((base.through_round if base else 0) + 1, record.through_round + 1):
        mine = validator is not None and quorum.has_disputed(client, record.task, rnd, validator)
        if mine or quorum.is_disputed(client, record.task, rnd):
            out.difference = f"it folds round {rnd}, which {'I' if mine else 'the validators'} disputed"
            return out
    try:
        model = history.fold(reputation_params(client), record.through_round)
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


def fetch_checkpoint(client: ChainClient, record: checkpoints.CheckpointRecord) -> CheckpointLeaves:
    """The published leaves of a proposed checkpoint, checked against its root (Unavailable if they
    cannot be read; a FlchainError if they are not the proposed ones)."""
    uri = manifest_uri(client, record.task, record.through_round, record.root)
    published = parse_checkpoint(read_published(uri, MAX_DOCUMENT_BYTES), uri)
    if published.root() != record.root:
        raise FlchainError(
            f"{uri}: its leaves give root 0x{published.root().hex()}, proposed 0x{record.root.hex()}"
        )
    return published


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
    verify = checkpoints.contract(client).functions.verify(task, address, value, active, proof)
    if not client.call(verify):
        raise FlchainError(
            f"the published leaves of checkpoint {record.id} do not verify on-chain for {address}"
        )
    return NodeProof(record.id, record.through_round, address, value, active, proof)
