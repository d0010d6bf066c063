"""ChainStrategy: any Flower strategy, plus on-chain identity checks, reply screening, contribution
scoring and a per-round commit to the ModelLedger. Composition, not a fork: the wrapped strategy samples
and aggregates; this class decides who may be sampled and what reaches aggregation, then hands each
job to its own module (gate, screening, scoring, committer, report)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fl_chain.chain import registry, reputation
from fl_chain.chain.fixedpoint import from_fixed
from fl_chain.fl.anchor import RootAnchor
from fl_chain.fl.committer import RoundCommitter
from fl_chain.fl.evidence import EvidenceBook
from fl_chain.fl.gate import NodeGate, VerifiedGrid
from fl_chain.fl.influence import InfluencePolicy, bound_influence, bound_step
from fl_chain.fl.records import (
    CONFIG_LOCAL_STEPS,
    CONFIG_PARENT_ROUND,
    CONFIG_TASK_ID,
    arrays_to_record,
    record_to_arrays,
    with_config,
)
from fl_chain.fl.report import RoundReport, RunEvents
from fl_chain.fl.scoring import ScoringPolicy, score_round
from fl_chain.fl.screening import Screened, ScreeningPolicy, judge_with_evidence, screen_replies
from fl_chain.fl.selection import Selector, local_steps

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class RoundPolicy:
    """How the coordinator runs a round around the wrapped strategy."""

    min_nodes: int = 1
    auth_timeout: float = 120.0  # how long to wait for `min_nodes` verified nodes
    screening: ScreeningPolicy = field(default_factory=ScreeningPolicy)
    scoring: ScoringPolicy = field(default_factory=ScoringPolicy)
    influence: InfluencePolicy = field(default_factory=InfluencePolicy)
    round_seconds: float = 0.0  # > 0: size each node's local work to its declared samples/s
    batch_size: int = 32


@dataclass(frozen=True)
class Evaluation:
    """The coordinator's own view of a model: validation loss (scoring) and test (loss, accuracy)."""

    test_metrics: Callable[[Arrays], tuple[float, float]]
    validation_loss: Callable[[Arrays], float] | None = None
    root: RootAnchor | None = None  # the server's root update g0 (fl/anchor.py), if it has a root set


class ChainStrategy(Strategy):
    """Wraps a Flower strategy: authenticate nodes against the NodeRegistry, sample only verified active
    nodes, drop unusable replies, score contributions, store the aggregate and commit the round."""

    def __init__(
        self,
        inner: Strategy,
        committer: RoundCommitter,
        evaluation: Evaluation,
        policy: RoundPolicy | None = None,
        selector: Selector | None = None,
        events: RunEvents | None = None,
        round_offset: int = 0,
        evidence: EvidenceBook | None = None,
    ) -> None:
        self.inner = inner
        self.committer = committer
        self.evaluation = evaluation
        self.policy = policy or RoundPolicy()
        self.selector = selector
        self.events = events or RunEvents()
        self.evidence = evidence  # anchored evidence of harm (needs evaluation.root)
        self.gate = NodeGate(committer.client, self.events)
        # On-chain round = round_offset + Flower's round (a resumed run continues the numbering).
        self.round_offset = round_offset
        self.min_nodes = max(self.policy.min_nodes, int(getattr(inner, "min_available_nodes", 1)))
        self._capacity: dict[str, int] = {}  # declared samples/s, read once per node per run
        self._selected: dict[int, str] = {}
        self._previous: dict[str, np.ndarray] = {}
        self._train_config: dict = {}
        self._train_started = 0.0

    # ---------------------------------------------------------------- training
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Authenticate newcomers, then let the wrapped strategy sample among verified nodes."""
        self.gate.start_round()
        allowed = self.gate.wait_for(grid, self.min_nodes, self.policy.auth_timeout)
        if self.selector is not None:
            allowed = self._select(allowed)
        self._previous = record_to_arrays(arrays)
        config = ConfigRecord({**dict(config), **self._chain_config(server_round - 1)})
        self._train_config = dict(config)
        messages = self.inner.configure_train(server_round, arrays, config, VerifiedGrid(grid, allowed))
        messages = [self._sized(m) for m in messages]
        self._selected = {
            m.metadata.dst_node_id: self.gate.verified[m.metadata.dst_node_id] for m in messages
        }
        self._train_started = time.monotonic()
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Screen, score, aggregate with the wrapped strategy, commit and report the round."""
        on_chain_round = self.round_offset + server_round
        seconds = {"train": time.monotonic() - self._train_started}
        screened = screen_replies(replies, self.gate.verified, self._previous, self.policy.screening)
        started = time.monotonic()
        root = self._root_update()
        if root is not None:
            seconds["anchor"] = time.monotonic() - started  # the server's own training on its root set
        if self.evidence is not None and root is not None:
            judge_with_evidence(screened, self.gate.verified, self.evidence, root, self._previous)
        if root is not None and self.policy.influence.clip_ratio > 0:
            bound_influence(
                screened, self.gate.verified, root, self._previous, self.policy.influence.clip_ratio
            )
        missed = sorted(a for n, a in self._selected.items() if n not in screened.answered)
        if self.selector is not None:
            answered = [a for n, a in self._selected.items() if n in screened.answered]
            self.selector.record(list(self._selected.values()), answered)
        started = time.monotonic()
        raw, scores = score_round(
            self.policy.scoring,
            self._previous,
            screened.updates,
            screened.weights,
            self.evaluation.validation_loss,
            on_chain_round,
            root,
        )
        seconds["score"] = time.monotonic() - started
        model, metrics = self._aggregate(on_chain_round, screened)
        step = 1.0
        if root is not None and self.policy.influence.step_ratio > 0:
            model, step = bound_step(model, self._previous, root, self.policy.influence.step_ratio)
        commit = self.committer.commit(on_chain_round, model, scores, missed, sorted(screened.penalized))
        report = self._report(on_chain_round, screened, raw, scores, missed, commit, model)
        report.step_scaled = round(step, 4)
        report.seconds = {k: round(v, 3) for k, v in {**seconds, **commit.seconds}.items()}
        self.events.emit(report)
        return arrays_to_record(model), metrics

    def _aggregate(
        self, on_chain_round: int, screened: Screened
    ) -> tuple[dict[str, np.ndarray], MetricRecord | None]:
        """The wrapped strategy's aggregate of the accepted replies, in the model's own dtypes (so the
        committed hash is over exactly what the nodes receive next); the previous model if none."""
        if not screened.accepted:
            log(WARNING, "flchain: round %s has no usable update; the model is unchanged", on_chain_round)
            return dict(self._previous), None
        arrays, metrics = self.inner.aggregate_train(on_chain_round, screened.accepted)
        if arrays is None:
            return dict(self._previous), metrics
        aggregated = record_to_arrays(arrays)
        return {k: aggregated[k].astype(v.dtype, copy=False) for k, v in self._previous.items()}, metrics

    def _report(self, on_chain_round, screened, raw, scores, missed, commit, model) -> RoundReport:
        loss, accuracy = self.evaluation.test_metrics(model)
        known = sorted(set(self.gate.known.values()))
        return RoundReport(
            round=on_chain_round,
            participants=sorted(scores),
            scores=scores,
            refused=dict(self.gate.round_refused),
            dropped=screened.dropped,
            accuracy=accuracy,
            loss=loss,
            missed=missed,
            penalized=sorted(screened.penalized),
            reputations=reputation.reputations(self.committer.client, known),
            raw_scores={k: float(v) for k, v in raw.items()},
            clipped={k: round(v, 4) for k, v in screened.clipped.items()},
            **commit.report_fields(),
        )

    def _root_update(self) -> np.ndarray | None:
        """g0 for this round, when something needs it and the server has a root set."""
        needed = (
            self.evidence is not None
            or self.policy.scoring.method == "fltrust"
            or self.policy.influence.clip_ratio > 0
            or self.policy.influence.step_ratio > 0
        )
        if not needed or self.evaluation.root is None:
            return None
        return self.evaluation.root.delta(self._previous, self._train_config)

    def _chain_config(self, parent_round: int) -> dict[str, int]:
        return {CONFIG_TASK_ID: self.committer.task, CONFIG_PARENT_ROUND: self.round_offset + parent_round}

    def _select(self, allowed: set[int]) -> set[int]:
        by_address = {self.gate.verified[n]: n for n in allowed}
        fixed = reputation.reputations(self.committer.client, by_address)
        chosen = self.selector.select(list(by_address), {a: from_fixed(v) for a, v in fixed.items()})
        return {by_address[a] for a in chosen}

    def _sized(self, message: Message) -> Message:
        """The message with the number of mini-batches that fit the node's declared capacity."""
        if self.policy.round_seconds <= 0:
            return message
        address = self.gate.verified[message.metadata.dst_node_id]
        if address not in self._capacity:
            self._capacity[address] = registry.get_node(
                self.committer.client, address
            ).capacity.samples_per_sec
        steps = local_steps(self._capacity[address], self.policy.round_seconds, self.policy.batch_size)
        return message if steps is None else with_config(message, {CONFIG_LOCAL_STEPS: steps})

    # ---------------------------------------------------------------- evaluation
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Federated evaluation (if the wrapped strategy does any) only on verified nodes."""
        config = ConfigRecord({**dict(config), **self._chain_config(server_round)})
        return self.inner.configure_evaluate(
            server_round, arrays, config, VerifiedGrid(grid, self.gate.allowed(grid))
        )

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Aggregate evaluation replies from verified nodes only."""
        good = [r for r in replies if not r.has_error() and r.metadata.src_node_id in self.gate.verified]
        return self.inner.aggregate_evaluate(server_round, good) if good else None

    def summary(self) -> None:
        """Log the wrapped strategy's summary and the chain settings."""
        log(INFO, "\tChainStrategy around %s, task %s", type(self.inner).__name__, self.committer.task)
        self.inner.summary()
