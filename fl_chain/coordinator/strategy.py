"""ChainStrategy: any Flower strategy, plus on-chain identity checks, reply screening, contribution
scoring and a per-round commit to the ModelLedger. Composition, not a fork: the wrapped strategy samples
and aggregates; this class decides who may be sampled and what reaches aggregation, then hands each
job to its own module (gate, screening, scoring, committer, report)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from logging import ERROR, INFO, WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.supercore import log

from fl_chain.chain import registry
from fl_chain.config import VERIFIABLE_STRATEGIES
from fl_chain.coordinator import verified_round
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.deadline_grid import DeadlineGrid
from fl_chain.coordinator.gate import NodeGate, VerifiedGrid
from fl_chain.coordinator.ledger_session import LedgerSession
from fl_chain.coordinator.policies import RoundPolicy, evidence_book, round_policy
from fl_chain.coordinator.root_round import RootRound
from fl_chain.coordinator.screening import Screened, judge_with_evidence, screen_replies
from fl_chain.coordinator.verified_round import canonical_weights
from fl_chain.defence import derivation
from fl_chain.defence.anchor import RootAnchor, RootTrainer
from fl_chain.defence.evidence import EvidenceBook
from fl_chain.defence.influence import bound_influence, bound_step
from fl_chain.defence.scoring import score_round
from fl_chain.defence.selection import Selector, local_steps
from fl_chain.errors import FlchainError
from fl_chain.protocol.fixedpoint import from_fixed
from fl_chain.protocol.update_signing import RoundContext, sign_ticket
from fl_chain.store import hash_arrays
from fl_chain.wire.records import (
    CONFIG_LOCAL_STEPS,
    CONFIG_PARENT_ROUND,
    CONFIG_TASK_ID,
    CONFIG_TICKET,
    arrays_to_record,
    record_to_arrays,
    with_config,
)
from fl_chain.wire.report import RoundReport, RunEnd, RunEvents, metric_fields

Arrays = Mapping[str, np.ndarray]
EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]


@dataclass(frozen=True)
class Evaluation:
    """The coordinator's own view of a model: validation loss (scoring) and test (loss, accuracy)."""

    test_metrics: Callable[[Arrays], tuple[float, float]] | None = None
    validation_loss: Callable[[Arrays], float] | None = None
    root: RootAnchor | None = None  # the server's root update g0 (fl/anchor.py), if it has a root set


class ChainStrategy(Strategy):
    """Wraps a Flower strategy: authenticate nodes against the NodeRegistry, sample only verified active
    nodes, drop unusable replies, score contributions, store the aggregate and commit the round."""

    def __init__(
        self,
        inner: Strategy,
        committer: RoundCommitter | None = None,
        evaluation: Evaluation | None = None,
        policy: RoundPolicy | None = None,
        selector: Selector | None = None,
        events: RunEvents | None = None,
        round_offset: int = 0,
        evidence: EvidenceBook | None = None,
        *,
        ledger: LedgerSession | None = None,
        app: str = "",
        root_fn: RootTrainer | None = None,
        root_examples: int | None = None,
    ) -> None:
        """flchain's own ServerApp passes a `committer` for its task; anyone's ServerApp passes a `ledger`
        (fl/ledger_session.py): the task is created on-chain from the initial arrays when `start` runs,
        identified by the model's architecture and `app` (the id its nodes' flchain mod is given).
        `root_fn(arrays, train_config) -> arrays` trains on the server's own clean root set: with it,
        scores are FLTrust trust and penalties need anchored evidence; without it, scores are cosine
        similarities with the median update and nobody is penalized for the content of an update. With
        `root_examples` (the root set's size; for nodes and root_fn that train epochs) update sizes are
        judged too, against |g0| scaled to a median node's claimed examples (boosting, free-riding,
        influence bounds: fl/anchor.py); otherwise only directions and copies are."""
        if committer is None and ledger is None:
            raise FlchainError(
                "ChainStrategy needs a ledger: ChainStrategy(strategy, ledger=LedgerSession...)"
            )
        self.inner = inner
        self.committer = committer
        self.ledger = ledger
        self.app = app
        root = RootAnchor(root_fn, root_examples) if root_fn is not None else None
        self.evaluation = evaluation or Evaluation(root=root)
        config = ledger.config if ledger is not None else None
        self.policy = policy or (round_policy(config) if config is not None else RoundPolicy())
        if self.policy.verified and type(inner).__name__ not in VERIFIABLE_STRATEGIES:
            raise FlchainError(
                f"verified rounds re-derive FedAvg: wrap {' or '.join(VERIFIABLE_STRATEGIES)}, "
                f'not {type(inner).__name__} (or set ledger.mode = "plain")'
            )
        if self.policy.verified and not self.policy.screening.require_signed:  # every update is disclosed
            self.policy = replace(self.policy, screening=replace(self.policy.screening, require_signed=True))
        if self.evaluation.root is None and self.policy.scoring.method == "fltrust":
            self.policy = replace(self.policy, scoring=replace(self.policy.scoring, method="cosine"))
        self.selector = selector
        self.events = events or (ledger.events if ledger is not None else RunEvents())
        if evidence is None and config is not None and self.evaluation.root is not None:
            evidence = evidence_book(config)
        self.evidence = evidence  # anchored evidence of harm (needs evaluation.root)
        self.gate = NodeGate(committer.client if committer else ledger.client, self.events)
        # On-chain round = round_offset + Flower's round (a resumed run continues the numbering).
        self.round_offset = round_offset
        self.min_nodes = max(self.policy.min_nodes, int(getattr(inner, "min_available_nodes", 1)))
        self._capacity: dict[str, int] = {}  # declared samples/s, read once per node per run
        self._selected: dict[int, str] = {}
        self._previous: dict[str, np.ndarray] = {}
        self._train_config: dict = {}
        needed = (
            self.evidence is not None
            or self.policy.scoring.method == "fltrust"
            or self.policy.influence.clip_ratio > 0
            or self.policy.influence.step_ratio > 0
        )
        self._root = RootRound(self.evaluation.root, needed, self._directions_count)
        self._train_started = 0.0
        self._round = 0  # Flower's current round (what the app's evaluate_fn is called with)
        self._deadline_grid: DeadlineGrid | None = None  # set by `start`; flchain's own loop may not use it
        self._evaluate_fn: EvaluateFn | None = None
        self._evaluated: dict[int, MetricRecord | None] = {}  # Flower round -> the user's metrics

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Flower's round loop; with a ledger, the task is created on-chain first (round 0 = the initial
        arrays) and the run's end goes to the run events. `evaluate_fn` is the user's centralized
        evaluation, called once per round: its metrics go on the round reports and to Flower's result."""
        self._evaluate_fn = evaluate_fn
        try:
            if self.committer is None:
                initial = record_to_arrays(initial_arrays)
                self.committer, commit = self.ledger.open_task(initial, self.app)
                metrics = self._user_metrics(0, initial_arrays)
                self.events.emit(RoundReport(round=0, **metric_fields(metrics), **commit.report_fields()))
            self._deadline_grid = DeadlineGrid(grid, self.policy.deadline)
            result = super().start(
                self._deadline_grid,
                initial_arrays,
                num_rounds,
                timeout,
                train_config,
                evaluate_config,
                self._evaluate_once if evaluate_fn is not None else None,
            )
        except BaseException as exc:
            if self.ledger is not None:
                self.events.emit(RunEnd(False, str(exc) if isinstance(exc, FlchainError) else repr(exc)))
            raise
        if self.ledger is not None:
            self.events.emit(RunEnd(True))
        return result

    def _user_metrics(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if self._evaluate_fn is None:
            return None
        if server_round not in self._evaluated:
            self._evaluated[server_round] = self._evaluate_fn(server_round, arrays)
        return self._evaluated[server_round]

    def _evaluate_once(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Flower's centralized evaluation hook: the metrics the round report already computed."""
        return self._user_metrics(server_round, arrays)

    # ---------------------------------------------------------------- training
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Authenticate newcomers, then let the wrapped strategy sample among verified nodes."""
        self.gate.start_round()
        allowed = self.gate.wait_for(grid, self.min_nodes, self.policy.auth_timeout)
        if self._deadline_grid is not None:  # nodes that failed to reply and were not heard from since
            allowed -= self._deadline_grid.absent_nodes()
        if self.committer.commitment is not None:  # suspended in the fold: not sampled before it is final
            held = self.committer.commitment.suspended()
            allowed = {n for n in allowed if self.gate.verified[n].lower() not in held}
        if self.selector is not None:
            allowed = self._select(allowed)
        self._previous = record_to_arrays(arrays)
        config = ConfigRecord({**dict(config), **self._chain_config(server_round - 1)})
        self._train_config = dict(config)
        messages = self.inner.configure_train(server_round, arrays, config, VerifiedGrid(grid, allowed))
        messages = [self._ticketed(self._sized(m), server_round) for m in messages]
        self._selected = {
            m.metadata.dst_node_id: self.gate.verified[m.metadata.dst_node_id] for m in messages
        }
        self._train_started = time.monotonic()
        self._round = server_round
        self._root.start(self._previous, self._train_config)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Screen, score, aggregate with the wrapped strategy, commit and report the round."""
        on_chain_round = self.round_offset + server_round
        seconds = {"train": time.monotonic() - self._train_started}
        client = self.committer.client
        context = RoundContext(
            client.deployment.chain_id, client.ledger.address, self.committer.task, on_chain_round
        )
        screened = screen_replies(replies, self.gate.verified, self._previous, self.policy.screening, context)
        root, reference = self._judge_with_root(screened, seconds)
        missed = self._attendance(screened)
        weights = (
            canonical_weights(screened, self.policy.screening.claim_cap) if self.policy.verified else None
        )
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
        model, metrics, aggregated = self._aggregate(on_chain_round, screened, weights)
        if not aggregated:  # the wrapped strategy produced no model: nobody is credited for this round
            scores, raw = {}, {}
        step = 1.0
        if reference is not None and self.policy.influence.step_ratio > 0:
            model, step = bound_step(model, self._previous, reference, self.policy.influence.step_ratio)
        verified = None
        if self.policy.verified:
            verified = verified_round.build(
                context,
                screened,
                scores,
                self.committer.parent_hash,
                hash_arrays(model),
                self.policy.scoring.method,
                self.policy.screening.claim_cap,
                step,
            )
        commit = self.committer.commit(
            on_chain_round, model, scores, missed, sorted(screened.penalized), verified
        )
        report = self._report(server_round, screened, raw, scores, missed, commit, model)
        report.step_scaled = round(step, 4)
        report.seconds = {k: round(v, 3) for k, v in {**seconds, **commit.seconds}.items()}
        self.events.emit(report)
        return arrays_to_record(model), metrics

    def _judge_with_root(
        self, screened: Screened, seconds: dict[str, float]
    ) -> tuple[np.ndarray | None, float | None]:
        """With the server's root update g0: leave suspect updates out (and penalize on accumulated
        evidence), clip updates to the size reference if configured. Returns (g0, the size of a median
        honest update when the root set's size is known)."""
        root, directions, waited = self._root.result()
        if root is None:
            return None, None
        seconds["anchor"] = waited  # waiting for the root training, if still running
        claims = list(screened.weights.values())
        reference = self.evaluation.root.size_reference(root, float(np.median(claims)) if claims else None)
        if self.evidence is not None:
            judge_with_evidence(
                screened, self.gate.verified, self.evidence, root, self._previous, reference, directions
            )
        if reference is not None and self.policy.influence.clip_ratio > 0:
            bound_influence(
                screened, self.gate.verified, reference, self._previous, self.policy.influence.clip_ratio
            )
        return root, reference

    def _attendance(self, screened: Screened) -> list[str]:
        """Who was sampled and did not answer (sorted); the selector learns who did."""
        missed = sorted(a for n, a in self._selected.items() if n not in screened.answered)
        if self.selector is not None:
            answered = [a for n, a in self._selected.items() if n in screened.answered]
            self.selector.record(list(self._selected.values()), answered)
        return missed

    def _aggregate(
        self, on_chain_round: int, screened: Screened, weights: dict[str, int] | None = None
    ) -> tuple[dict[str, np.ndarray], MetricRecord | None, bool]:
        """The wrapped strategy's aggregate of the accepted replies, in the model's own dtypes (so the
        committed hash is over exactly what the nodes receive next), and whether there was one; else
        the previous model. With `weights` (a verified round) the model is fl/derivation.py's FedAvg of
        the accepted updates, which validators re-derive bit for bit; the wrapped strategy (FedAvg or
        FedProx) then only aggregates the replies' metrics."""
        if not screened.accepted:
            log(WARNING, "flchain: round %s has no usable update; the model is unchanged", on_chain_round)
            return dict(self._previous), None, False
        arrays, metrics = self.inner.aggregate_train(on_chain_round, screened.accepted)
        if weights is not None:
            return derivation.aggregate(self._previous, screened.updates, weights), metrics, True
        aggregated = record_to_arrays(arrays) if arrays is not None else {}
        if set(aggregated) != set(self._previous):
            log(
                ERROR,
                "flchain: %s returned %s in round %s; the model is unchanged and nobody is credited",
                type(self.inner).__name__,
                "no arrays"
                if arrays is None
                else f"arrays {sorted(aggregated)} for {sorted(self._previous)}",
                on_chain_round,
            )
            return dict(self._previous), metrics, False
        model = {k: aggregated[k].astype(v.dtype, copy=False) for k, v in self._previous.items()}
        return model, metrics, True

    def _report(self, server_round, screened, raw, scores, missed, commit, model) -> RoundReport:
        on_chain_round = self.round_offset + server_round
        if self.evaluation.test_metrics is not None:
            loss, accuracy = self.evaluation.test_metrics(model)
            fields = {"loss": loss, "accuracy": accuracy}
        else:
            fields = metric_fields(self._user_metrics(server_round, arrays_to_record(model)))
        known = sorted(set(self.gate.known.values()))
        return RoundReport(
            round=on_chain_round,
            participants=sorted(scores),
            scores=scores,
            refused=dict(self.gate.round_refused),
            dropped=screened.dropped,
            missed=missed,
            penalized=sorted(screened.penalized),
            reputations=self.committer.reputations(known),
            raw_scores={k: float(v) for k, v in raw.items()},
            clipped={k: round(v, 4) for k, v in screened.clipped.items()},
            signed=sorted(screened.signed),
            **fields,
            **commit.report_fields(),
        )

    def _directions_count(self, previous: dict[str, np.ndarray], root: np.ndarray) -> bool:
        """Whether g0's direction is evidence this round. In anyone's Flower App (a ledger session: any
        model, any local training) only while g0 improves the 'loss' of the app's evaluate_fn (called
        with the model g0 leads to): with long local training honest updates drift against an overfit g0
        (cnn-digits, 10 epochs: an honest node was suspended after 5 rounds without this). flchain's own
        tasks keep directions as evidence in every round: their calibration (docs/anchor-calibration.md)
        shows honest directions hold, and ALIE colluders are caught in rounds where g0 no longer
        improves the test loss (tests/test_robustness_quick.py)."""
        if self.evidence is None or self.ledger is None or self._evaluate_fn is None:
            return True
        evaluate_fn, server_round = self._evaluate_fn, self._round

        def loss(arrays: Mapping[str, np.ndarray]) -> float | None:
            metrics = evaluate_fn(server_round, arrays_to_record(dict(arrays)))
            value = metrics.get("loss") if metrics is not None else None
            return float(value) if isinstance(value, int | float) else None

        return RootAnchor.improves(previous, root, loss, self.evidence.policy.min_root_improvement)

    def _chain_config(self, parent_round: int) -> dict[str, int]:
        return {CONFIG_TASK_ID: self.committer.task, CONFIG_PARENT_ROUND: self.round_offset + parent_round}

    def _select(self, allowed: set[int]) -> set[int]:
        by_address = {self.gate.verified[n]: n for n in allowed}
        fixed = self.committer.reputations(by_address)
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

    def _ticketed(self, message: Message, server_round: int) -> Message:
        """In a verified round, the message with the coordinator's ticket sampling its node (what a node
        shows the ledger to complain that its update was left out)."""
        if not self.policy.verified:
            return message
        client = self.committer.client
        ticket = sign_ticket(
            self.committer.coordinator,
            client.deployment.chain_id,
            client.ledger.address,
            self.committer.task,
            self.round_offset + server_round,
            self.gate.verified[message.metadata.dst_node_id],
        )
        return with_config(message, {CONFIG_TICKET: ticket})

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
