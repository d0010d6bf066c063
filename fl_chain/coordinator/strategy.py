"""ChainStrategy: any Flower strategy, plus on-chain identity checks, reply screening, contribution
scoring and a per-round commit to the ModelLedger. Composition, not a fork: the wrapped strategy samples
and aggregates; this class decides who may be sampled and what reaches aggregation, and hands each job
to its own module: the join gate (gate.py), the training round (train_round.py), the evaluate side
(evaluation.py), the run events (reporting.py).

Two entry points build it: `ChainStrategy.for_task` (flchain's own ServerApp, server_app.py: the task
exists already) and `ChainStrategy.with_ledger` (anyone's ServerApp, with a LedgerSession: the task is
created from the initial arrays when `start` runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.supercore import log

from fl_chain.chain.client import ChainClient
from fl_chain.coordinator.committer import Commit, RoundCommitter
from fl_chain.coordinator.deadline_grid import DeadlineGrid
from fl_chain.coordinator.evaluation import EvaluateFn, Evaluation, RoundMetrics
from fl_chain.coordinator.gate import AdmittedGrid, NodeGate
from fl_chain.coordinator.ledger_session import LedgerSession
from fl_chain.coordinator.policies import ChainOptions, effective_policy, ledger_options, rules_of
from fl_chain.coordinator.reporting import run_end_reported
from fl_chain.coordinator.train_round import TrainRounds
from fl_chain.defence.anchor import RootAnchor, RootTrainer
from fl_chain.defence.update_checks import check_metrics
from fl_chain.wire.records import record_to_arrays
from fl_chain.wire.report import RoundReport, metric_fields

# Creates the task on-chain from the initial arrays (and its rules, by keyword) and commits them as round 0.
TaskOpener = Callable[..., tuple[RoundCommitter, Commit]]


class ChainStrategy(Strategy):
    """Wraps a Flower strategy: admit nodes whose join answer checks out against the NodeRegistry, sample
    only admitted active nodes, drop unusable replies, score contributions, store the aggregate and
    commit the round."""

    def __init__(
        self,
        inner: Strategy,
        client: ChainClient,
        task: RoundCommitter | TaskOpener,
        options: ChainOptions,
        round_offset: int = 0,
    ) -> None:
        """The one way a ChainStrategy is built (use `for_task` or `with_ledger`). `task` is the committer
        of a task that exists (on-chain round = `round_offset` + Flower's round), or a TaskOpener: then
        `start` creates the task and the run is this strategy's to report (round 0, and its end)."""
        self.inner = inner
        policy = effective_policy(options.policy, type(inner).__name__, options.evaluation.root is not None)
        self.options = replace(options, policy=policy)
        self.rules = rules_of(policy)  # the task's on-chain rules: what validators re-derive with
        if isinstance(task, RoundCommitter):
            task.check_rules(self.rules)
        self.run_events = options.run_events
        self.gate = NodeGate(client, self.run_events, fraction=options.gate_fraction, seed=options.seed)
        self.metrics = RoundMetrics(options.evaluation)
        self._open_task = None if isinstance(task, RoundCommitter) else task
        self.rounds = TrainRounds(
            inner, self.gate, self.options, self.metrics, round_offset, self._open_task is not None
        )
        if isinstance(task, RoundCommitter):
            self.rounds.committer = task

    @classmethod
    def for_task(
        cls,
        inner: Strategy,
        committer: RoundCommitter,
        options: ChainOptions | None = None,
        round_offset: int = 0,
    ) -> ChainStrategy:
        """flchain's own ServerApp (server_app.py): `committer`'s task exists (just created with its
        round 0, or resumed after its round `round_offset`); the ServerApp reports the run's end."""
        return cls(inner, committer.client, committer, options or ChainOptions(), round_offset)

    @classmethod
    def with_ledger(
        cls,
        inner: Strategy,
        ledger: LedgerSession,
        *,
        app: str = "",
        root_fn: RootTrainer | None = None,
        root_examples: int | None = None,
    ) -> ChainStrategy:
        """Anyone's ServerApp: `ChainStrategy.with_ledger(FedAvg(...), LedgerSession.from_context(context))`.
        The task is created on-chain from the initial arrays when `start` runs, identified by the
        model's architecture and `app` (the id its nodes' flchain mod is given); the rules come from the
        session's config. `root_fn(arrays, train_config) -> arrays` trains on the server's own clean root
        set: with it, scores are FLTrust trust and penalties need anchored evidence; without it, scores
        are cosine similarities with the median update and nobody is penalized for the content of an
        update. With `root_examples` (the root set's size; for nodes and root_fn that train epochs)
        update sizes are judged too, against |g0| scaled to a median node's claimed examples (boosting,
        free-riding, influence bounds: defence/anchor.py); otherwise only directions and copies are."""
        root = RootAnchor(root_fn, root_examples) if root_fn is not None else None
        options = ledger_options(ledger.config, Evaluation(root=root), ledger.events)
        return cls(inner, ledger.client, partial(ledger.open_task, app=app), options)

    @property
    def committer(self) -> RoundCommitter | None:
        """The task's committer (None before `start` opened a task)."""
        return self.rounds.committer

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
        """Flower's round loop, through a DeadlineGrid. A task opened here is created on-chain first
        (round 0 = the initial arrays) and the run's end goes to the run events. `evaluate_fn` is the
        app's centralized evaluation, called once per round: its metrics go on the round reports and
        to Flower's result."""
        self.metrics.evaluate_fn = evaluate_fn
        loop = (grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config)
        if self._open_task is None:
            return self._loop(*loop)
        with run_end_reported(self.run_events):
            if self.rounds.committer is None:
                self._open(initial_arrays)
            return self._loop(*loop)

    def _open(self, initial_arrays: ArrayRecord) -> None:
        """Create the task from the initial arrays and report its round 0."""
        self.rounds.committer, commit = self._open_task(record_to_arrays(initial_arrays), rules=self.rules)
        fields = metric_fields(self.metrics.app_metrics(0, initial_arrays))
        self.run_events.emit(RoundReport(round=0, **fields, **commit.report_fields()))

    def _loop(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int,
        timeout: float,
        train_config: ConfigRecord | None,
        evaluate_config: ConfigRecord | None,
    ) -> Result:
        """Flower's own `start`, training through a DeadlineGrid (flchain's own loop may not use it)."""
        self.rounds.deadline_grid = DeadlineGrid(grid, self.options.policy.deadline)
        self.rounds.overlap = True  # this loop settles the last round's commit before it returns
        try:
            result = super().start(
                self.rounds.deadline_grid,
                initial_arrays,
                num_rounds,
                timeout,
                train_config,
                evaluate_config,
                self.metrics.flower_hook(),
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the loop's own failure is the one to report
                self._end_overlap()
            raise
        self._end_overlap()  # the last round's commit is mined (or its failure raised) first
        return result

    def _end_overlap(self) -> None:
        """Settle the commit in flight and commit synchronously again."""
        self.rounds.overlap = False
        self.rounds.commits.close()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Authenticate newcomers, then let the wrapped strategy sample among admitted nodes."""
        return self.rounds.configure(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Screen, score, aggregate with the wrapped strategy, commit and report the round."""
        return self.rounds.aggregate(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Federated evaluation (if the wrapped strategy does any) only on admitted nodes."""
        config = ConfigRecord({**dict(config), **self.rounds.chain_config(server_round)})
        return self.inner.configure_evaluate(
            server_round, arrays, config, AdmittedGrid(grid, self.gate.allowed(grid))
        )

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Aggregate evaluation replies from admitted nodes only."""
        good = [
            r
            for r in replies
            if not r.has_error()
            and r.metadata.src_node_id in self.gate.admitted
            and _usable_evaluation(r, self.options.policy.screening.weight_key)
        ]
        return self.inner.aggregate_evaluate(server_round, good) if good else None

    def summary(self) -> None:
        """Log the wrapped strategy's summary and the chain settings."""
        log(INFO, "\tChainStrategy around %s, task %s", type(self.inner).__name__, self.committer.task)
        self.inner.summary()


def _usable_evaluation(reply: Message, weight_key: str) -> bool:
    """An evaluation reply the wrapped strategy may average: one MetricRecord whose example count and
    metrics pass the same checks as a training reply's (an inf or a string must not reach Flower's
    weighted average)."""
    records = list(reply.content.metric_records.values())
    return len(records) == 1 and check_metrics(records[0], weight_key) is None
