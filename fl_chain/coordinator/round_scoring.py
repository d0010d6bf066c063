"""A training round's scores and its aggregate: the contribution scores the ledger records (`score_round`,
measured from the round's suspect line when configured), computed beside the wrapped strategy's
aggregation of the same settled updates or, in a plain round whose commit overlaps the next round, in
that commit's job (`credited`), then what the round credits: nobody when the strategy produced no model,
and 0 for an update the evidence rules left out as suspect (`scoring.left_out_zero`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from flwr.serverapp.strategy import Strategy

from fl_chain.coordinator.policies import RoundPolicy
from fl_chain.coordinator.screening import Screened
from fl_chain.coordinator.strategy_aggregate import Aggregate, Model, aggregate_replies
from fl_chain.defence.scoring import UPDATES_ONLY, score_round

Scores = tuple[dict[str, float], dict[str, int]]  # (raw, fixed-point) per participant address


@dataclass(frozen=True)
class ScoreInputs:
    """What a round's scores read: the model the round trained from (`previous`), its on-chain round, its
    screened replies, g0 (`root`, flat; None without a root set), its suspect line (fltrust scores are
    measured from it) and its time split (`seconds`, where the scoring time is noted as "score")."""

    previous: Model
    on_chain_round: int
    screened: Screened
    root: np.ndarray | None
    line: float
    seconds: dict[str, float]


@dataclass(frozen=True)
class RoundScoring:
    """Scores and aggregates the rounds of one ChainStrategy: `inner` is the wrapped strategy, `policy`
    the round policy it runs, `validation_loss` the server's loss for the scoring methods that evaluate
    models (None where there is none)."""

    inner: Strategy
    policy: RoundPolicy
    validation_loss: Callable[[Model], float] | None

    def score_and_aggregate(
        self, inputs: ScoreInputs, weights: dict[str, int] | None
    ) -> tuple[Scores, Aggregate]:
        """The round's (raw, fixed-point) scores as the ledger credits them (`credited`) and its aggregate
        (`aggregate`; `weights`: a verified round's canonical ones). Scores that read only the settled
        updates are computed in a thread while the wrapped strategy aggregates them: neither writes what
        the other reads, both are mostly numpy (which releases the GIL), and the nodes are idle between
        rounds. Methods that evaluate models stay in line (a strategy's aggregation may use the same
        model objects)."""
        if not self.deferrable():
            scored = self._score(inputs)
            result = self.aggregate(inputs, weights)
        else:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flchain-score") as pool:
                scoring = pool.submit(self._score, inputs)
                result = self.aggregate(inputs, weights)
                scored = scoring.result()
        return self._credit(scored, inputs.screened, result), result

    def deferrable(self) -> bool:
        """Whether the scores read only the settled updates (not models), so they may be computed apart
        from the aggregation: beside it, or after it, with the round's overlapped commit."""
        return self.policy.scoring.method in UPDATES_ONLY

    def aggregate(self, inputs: ScoreInputs, weights: dict[str, int] | None) -> Aggregate:
        """The wrapped strategy's aggregate of the screened replies (`aggregate_replies`)."""
        return aggregate_replies(self.inner, inputs.previous, inputs.on_chain_round, inputs.screened, weights)

    def credited(self, inputs: ScoreInputs, result: Aggregate) -> Scores:
        """The round's scores as the ledger credits them, for a round whose aggregate `result` is
        already made (the overlapped commit computes them while the next round trains: `deferrable`)."""
        return self._credit(self._score(inputs), inputs.screened, result)

    def _credit(self, scored: Scores, screened: Screened, result: Aggregate) -> Scores:
        """What the round credits of `scored`: nobody when the wrapped strategy produced no model, and 0
        for an update the evidence rules left out as suspect (`scoring.left_out_zero`)."""
        if not result.aggregated:
            return {}, {}
        if self.policy.scoring.left_out_zero and not self.policy.verified:
            return left_out_scored_zero(*scored, screened)
        return scored

    def _score(self, inputs: ScoreInputs) -> Scores:
        """The round's (raw, fixed-point) scores, its time noted in `inputs.seconds["score"]`."""
        started = time.monotonic()
        screened = inputs.screened
        scored = score_round(
            self.policy.scoring,
            inputs.previous,
            screened.updates,
            screened.weights,
            self.validation_loss,
            inputs.on_chain_round,
            inputs.root,
            screened.current_grams(),  # a Gram matrix of these updates is read, not the parameters again
            inputs.line,
            screened.clipped,
        )
        inputs.seconds["score"] = time.monotonic() - started
        return scored


def left_out_scored_zero(raw: Mapping[str, float], scores: Mapping[str, int], screened: Screened) -> Scores:
    """The round's (raw, fixed-point) scores with 0 for every update the evidence rules left out as
    suspect without a penalty yet: it added nothing to the model, as a clipped update is credited only for
    the share that was aggregated; unscored, an attacker suspect every few rounds lost nothing in the
    rounds it was caught (docs/left-out-scores.md). A score cannot suspend (Reputation.sol): an honest
    node suspect now and then loses standing, never its place. Not the backdoor filter's exclusions: an
    update outside g0's cluster is no evidence (honest ones are left out routinely), and scored 0 they left
    an honest node one missed round from suspension. Not in verified rounds, whose validators re-derive
    every score and cannot re-derive a suspicion (it needs the server's root set)."""
    zero = sorted(screened.suspect - set(scores) - screened.penalized)
    return {**raw, **dict.fromkeys(zero, 0.0)}, {**scores, **dict.fromkeys(zero, 0)}
