"""Commitment mode's reputation, folded off-chain from published outcome leaves.

The arithmetic is the Reputation contract's (protocol/reputation_model.py, its Python reference), so a
commitment-mode task's reputations are what a per-participant task's would be. Every round's outcomes
are folded in order from round 1, each with the Reputation parameters in effect at its commit block
(Reputation.parametersAt). A node enters at the starting reputation the first time it has an outcome.
The fold starts each round from the registry's decisions: a node the fold holds suspended that the
registrar re-approved after the round that suspended it (NodeRegistry.activatedAt, read as of the block
before the round's commit) restarts at the starting reputation, Active, as Reputation.statusChanged
does. Nothing else lifts a suspension: an outcome of a node the fold still holds suspended is not
folded (its suspension may simply not be applied to the registry yet). The chain side
(chain/published.py `fold_inputs`) reads those decisions; the coordinator, every validator and
`flchain audit` run this same fold.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_utils import to_checksum_address

from fl_chain.protocol.outcomes import MISSED, PENALIZED, SCORED, CheckpointLeaves, RoundOutcomes
from fl_chain.protocol.reputation_model import ReputationModel, ReputationParams


def new_fold(params: tuple[int, int, int, int, int]) -> ReputationModel:
    """An empty fold with the Reputation contract's parameters (its struct order)."""
    return ReputationModel(ReputationParams(*params))


def fold_round(
    model: ReputationModel,
    outcomes: RoundOutcomes,
    params: tuple[int, int, int, int, int] | None = None,
    reinstated: Iterable[str] = (),
    commit_block: int = 0,
) -> list[str]:
    """Fold one round's outcomes into `model` (scored, then missed, then penalized, as
    Reputation.recordRound does) with `params` (None: the model's), after restarting the `reinstated`
    nodes (re-approved by the registrar since their suspension); returns the nodes this round suspended,
    noting `commit_block` (the round's) as the block of their suspension."""
    if params is not None:
        model.params = ReputationParams(*params)
    for node in reinstated:
        model.approve(node)  # below the threshold: back to the starting value, as statusChanged does
        model.suspended_at.pop(node, None)
    for outcome in outcomes.outcomes:
        if outcome.node not in model.active:
            model.approve(outcome.node)  # its first outcome: enrolled at the starting reputation
    # Only the registrar lifts a suspension: a held node's score is not folded (before, any outcome
    # reset it, so a coordinator could sample a node before its suspension was applied and clear it).
    held = {node for node, active in model.active.items() if not active}
    suspended = model.apply_round(
        [(o.node, o.score) for o in outcomes.of_kind(SCORED) if o.node not in held],
        [o.node for o in outcomes.of_kind(MISSED)],
        [o.node for o in outcomes.of_kind(PENALIZED)],
    )
    model.suspended_at.update(dict.fromkeys(suspended, commit_block))
    return suspended


def held_suspended(model: ReputationModel) -> dict[str, int]:
    """The nodes the fold holds suspended, with the commit block of the round that suspended each."""
    return {node: model.suspended_at.get(node, 0) for node, active in model.active.items() if not active}


def fold_all(params: tuple[int, int, int, int, int], rounds: Iterable[RoundOutcomes]) -> ReputationModel:
    """The fold of a task's rounds, in the order given (round 1 first)."""
    model = new_fold(params)
    for outcomes in rounds:
        fold_round(model, outcomes)
    return model


def checkpoint_of(
    model: ReputationModel, chain_id: int, ledger: str, task: int, through_round: int
) -> CheckpointLeaves:
    """The checkpoint of a fold: one (node, reputation, active) leaf per node, by address."""
    leaves = tuple(
        (to_checksum_address(node), int(model.values[node]), bool(model.active.get(node)))
        for node in sorted(model.values, key=str.lower)
    )
    return CheckpointLeaves(
        chain_id, to_checksum_address(ledger), task, through_round, model.params.as_tuple(), leaves
    )
