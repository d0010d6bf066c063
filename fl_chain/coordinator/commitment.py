"""The coordinator's side of commitment mode (`ledger.mode = "commitment"`): per round, the outcome
leaves to publish and commit by root; the off-chain reputation fold; every `checkpoint_every` rounds a
checkpoint of that fold proposed to ReputationCheckpoints; and, once the validators finalized a
checkpoint, its suspensions applied to the registry. Selection reads reputations from the fold (no RPC
call per candidate)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from eth_account.signers.local import LocalAccount

from fl_chain.chain import checkpoints, reputation
from fl_chain.chain.client import ChainClient
from fl_chain.chain.published import History, fold_with_chain
from fl_chain.protocol.outcomes import CheckpointLeaves, RoundOutcomes
from fl_chain.protocol.reputation_fold import checkpoint_of, new_fold
from fl_chain.store import BlobStore

KEEP_PROPOSED = 16  # checkpoints not yet finalized whose leaves the coordinator keeps for their suspensions


class CommitmentBook:
    """One task's outcomes, folded reputation and checkpoints, as the coordinator keeps them."""

    def __init__(
        self, client: ChainClient, coordinator: LocalAccount, task: int, store: BlobStore, every: int = 1
    ) -> None:
        checkpoints.contract(client)  # a one-line error on a deployment without checkpoints
        self.client, self.coordinator, self.task, self.store = client, coordinator, task, store
        self.every = max(1, every)
        self.fold = new_fold(reputation.parameters(client))
        self.folded_through = 0
        self.proposed: dict[int, CheckpointLeaves] = {}
        self.applied = 0  # the newest finalized checkpoint whose suspensions were applied

    def resume(self, through_round: int) -> None:
        """Re-fold the task's published outcomes of rounds 1..through_round (a resumed run)."""
        if through_round > self.folded_through:
            self.fold = History(self.client, self.task).fold(through_round)
            self.folded_through = through_round

    def outcomes(
        self,
        round_number: int,
        parent: bytes,
        model_hash: bytes,
        scores: Mapping[str, int],
        missed: Sequence[str],
        penalized: Sequence[str],
    ) -> RoundOutcomes:
        """The round's outcome leaves."""
        context = (self.client.deployment.chain_id, str(self.client.ledger.address), self.task, round_number)
        return RoundOutcomes.of(context, parent, model_hash, dict(scores), list(missed), list(penalized))

    def record(self, outcomes: RoundOutcomes) -> list[str]:
        """Fold a committed round in, with the chain's inputs for it (parameters at its commit, the
        registrar's reinstatements before it: the validators fold with the same); returns the nodes it
        suspends (in effect on-chain once a checkpoint holding the suspension is finalized)."""
        self.resume(outcomes.round - 1)
        suspended = fold_with_chain(self.client, self.task, self.fold, outcomes) if outcomes.round > 0 else []
        self.folded_through = max(self.folded_through, outcomes.round)
        return suspended

    def propose_if_due(self, round_number: int) -> tuple[int, int] | None:
        """Publish and propose a checkpoint of the fold if this round is due one: (id, bytes published)."""
        if round_number == 0 or round_number % self.every or not self.fold.values:
            return None
        leaves = checkpoint_of(
            self.fold,
            self.client.deployment.chain_id,
            str(self.client.ledger.address),
            self.task,
            round_number,
        )
        document = leaves.to_json()
        self.store.put_document(leaves.name(), document)
        checkpoint_id, _ = checkpoints.propose(
            self.client, self.coordinator, self.task, round_number, leaves.root(), len(leaves.leaves)
        )
        self.proposed[checkpoint_id] = leaves
        for old in sorted(self.proposed)[:-KEEP_PROPOSED]:  # a long run without validators: bounded memory
            del self.proposed[old]
        return checkpoint_id, len(document)

    def apply_finalized(self) -> list[str]:
        """Apply to the registry the suspensions of the task's latest finalized checkpoint (once per
        checkpoint); returns the nodes suspended now."""
        latest = checkpoints.latest(self.client, self.task)
        if latest is None or latest.id <= self.applied or latest.id not in self.proposed:
            return []
        self.applied = latest.id
        done = checkpoints.apply_suspensions(self.client, self.coordinator, self.proposed[latest.id])
        for old in [i for i in self.proposed if i < latest.id]:  # superseded: never needed again
            del self.proposed[old]
        return done

    def reputations(self, addresses: Iterable[str]) -> dict[str, int]:
        """Folded reputation (fixed point) of each address; the starting value for a node without outcomes."""
        values = {node.lower(): value for node, value in self.fold.values.items()}
        return {a: values.get(a.lower(), self.fold.params.initial) for a in addresses}

    def suspended(self) -> set[str]:
        """Nodes the fold holds suspended (lowercase), finalized on-chain or not."""
        return {node.lower() for node, active in self.fold.active.items() if not active}
