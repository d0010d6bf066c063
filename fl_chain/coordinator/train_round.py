"""ChainStrategy's training round, both halves. `configure`: the nodes it may sample and the decoration of
its messages (coordinator/round_sampling.py), the task id and parent round every message carries, the
server's root training and the replies' early checks started. `aggregate`: the replies screened, judged
against the server's root update, scored and aggregated by the wrapped strategy (or re-derivably, in a
verified round: coordinator/round_scoring.py), bounded, committed and reported."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fl_chain.chain import update_claims
from fl_chain.coordinator import verified_round
from fl_chain.coordinator.anchored_judging import Judged, judge_with_root
from fl_chain.coordinator.commit_pipeline import CommitPipeline
from fl_chain.coordinator.committer import Commit, RoundCommitter
from fl_chain.coordinator.deadline_grid import DeadlineGrid
from fl_chain.coordinator.early_checks import EarlyChecks
from fl_chain.coordinator.evaluation import RoundMetrics
from fl_chain.coordinator.gate import AdmittedGrid, NodeGate
from fl_chain.coordinator.policies import ChainOptions, rules_of
from fl_chain.coordinator.reporting import round_report
from fl_chain.coordinator.root_round import RootRound
from fl_chain.coordinator.round_sampling import RoundSampling
from fl_chain.coordinator.round_scoring import RoundScoring, ScoreInputs
from fl_chain.coordinator.screening import Screened, screen_replies
from fl_chain.coordinator.strategy_aggregate import Aggregate, Model
from fl_chain.coordinator.verified_round import canonical_weights
from fl_chain.defence.anchor import RootAnchor
from fl_chain.defence.backdoor import DirectionHistory, noised
from fl_chain.defence.influence import bound_step
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.update_signing import RoundContext
from fl_chain.wire.records import (
    CONFIG_PARENT_ROUND,
    CONFIG_ROUND,
    CONFIG_TASK_ID,
    arrays_to_record,
    record_to_arrays,
)


class TrainRounds:
    """The training rounds of one ChainStrategy; `committer` is its task's (set by the strategy before
    the first round) and `deadline_grid` the Grid Flower's loop trains through, if `start` made one."""

    def __init__(
        self,
        inner: Strategy,
        gate: NodeGate,
        options: ChainOptions,
        metrics: RoundMetrics,
        round_offset: int,
        app_directions: bool,
    ) -> None:
        """`options.policy` as the round runs it (policies.effective_policy); on-chain round =
        `round_offset` + Flower's round (a resumed run continues the numbering). `app_directions`: a
        Flower App's run, where g0's direction counts as evidence only while g0 improves the app's loss
        (see `_directions_count`)."""
        self.inner, self.gate, self.options, self.metrics = inner, gate, options, metrics
        self.policy = options.policy
        self.rules = rules_of(self.policy)  # what every verified manifest declares: the task's rules
        self.round_offset = round_offset
        self.app_directions = app_directions
        self.committer: RoundCommitter | None = None
        self.deadline_grid: DeadlineGrid | None = None
        self.commits = CommitPipeline()  # round r's commit while round r+1 trains (commit_pipeline.py)
        # Set by ChainStrategy.start around Flower's loop, which settles the last commit at its end; a
        # caller driving configure/aggregate itself gets each commit done when `aggregate` returns.
        self.overlap = False
        # Nodes round r's overlapped commit suspended (lowercase addresses): round r+1 sampled them before
        # it landed, and the ledger refuses scores or charges for an inactive node (aggregate drops them).
        self._suspended_meanwhile: set[str] = set()
        self.sampling = RoundSampling(inner, gate, options)
        self.scoring = RoundScoring(inner, self.policy, options.evaluation.validation_loss)
        self._selected: dict[int, str] = {}
        self._previous: Model = {}
        self._early: EarlyChecks | None = None  # this round's, from configure until screening reads it
        self._train_config: dict = {}
        self._train_started = 0.0
        self._join_seconds = 0.0
        self._round = 0  # Flower's current round (what the app's evaluate_fn is called with)
        needed = (
            options.evidence is not None
            or self.policy.scoring.method == "fltrust"
            or self.policy.influence.clip_ratio > 0
            or self.policy.influence.step_ratio > 0
            or self.policy.backdoor.enabled
        )
        self._noise_bound = 0.0  # this round's backdoor-filter clipping bound (the noise scale)
        backdoor = self.policy.backdoor
        self._history = DirectionHistory() if backdoor.enabled and backdoor.history else None
        self._root = RootRound(options.evaluation.root, needed, self._directions_count)

    # ---------------------------------------------------------------- configure
    def configure(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """Authenticate newcomers, then let the wrapped strategy sample among the allowed nodes."""
        joining = time.monotonic()
        allowed = self.sampling.allowed(grid, self.committer, self.deadline_grid)
        self._join_seconds = time.monotonic() - joining  # how long the join gate held the round
        # With round r's commit in flight its parent is not on-chain yet, so nobody can have disputed it.
        rebased = None if self.commits.pending else self.committer.rebase_if_disputed()
        if rebased is not None:  # the validators disputed the parent: train from the newest finalized model
            arrays = arrays_to_record(rebased[1])
        self._previous = record_to_arrays(arrays)
        config = ConfigRecord({**dict(config), **self._parent_config(server_round)})
        self._train_config = dict(config)
        messages = self.inner.configure_train(server_round, arrays, config, AdmittedGrid(grid, allowed))
        context = self._context(self.round_offset + server_round)
        messages = [self.sampling.decorated(m, self.committer, context) for m in messages]
        self._selected = {
            m.metadata.dst_node_id: self.gate.admitted[m.metadata.dst_node_id] for m in messages
        }
        self._train_started = time.monotonic()
        self._round = server_round
        self._root.start(self._previous, self._train_config)
        self._start_early_checks()
        return messages

    def _start_early_checks(self) -> None:
        """Check each reply and hash its update as it arrives (coordinator/early_checks.py)."""
        if self._early is not None:
            self._early.close()
        self._early = EarlyChecks(self._previous, self.policy.screening)
        if self.deadline_grid is not None:
            self.deadline_grid.on_reply = self._early.submit

    def _parent_config(self, server_round: int) -> dict[str, int]:
        """chain_config for a training round: its parent is the previous round, or the round a rebase
        past a disputed one chose (the committer knows)."""
        config = self.chain_config(server_round - 1)
        if self.committer.rebased is not None:
            config[CONFIG_PARENT_ROUND] = self.committer.rebased[0]
        return {**config, CONFIG_ROUND: self.round_offset + server_round}

    def chain_config(self, parent_round: int) -> dict[str, int]:
        """The config entries every message of a round carries: the task and the round it builds on."""
        return {CONFIG_TASK_ID: self.committer.task, CONFIG_PARENT_ROUND: self.round_offset + parent_round}

    def _context(self, on_chain_round: int) -> RoundContext:
        """What a node's signature on its update binds: chain, ledger, task and round."""
        client = self.committer.client
        return RoundContext(
            client.deployment.chain_id, client.ledger.address, self.committer.task, on_chain_round
        )

    # ---------------------------------------------------------------- aggregate
    def aggregate(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord, MetricRecord | None]:
        """Screen, judge, score, aggregate with the wrapped strategy, commit and report the round."""
        self.commits.settle()  # the previous round is mined (or the run stops) before a reply is used
        gone, self._suspended_meanwhile = self._suspended_meanwhile, set()
        on_chain_round = self.round_offset + server_round
        seconds = {"join": self._join_seconds, "train": time.monotonic() - self._train_started}
        context = self._context(on_chain_round)
        started = time.monotonic()
        screened = self._screen(replies, gone, context)
        seconds["screen"], seconds["hash"] = time.monotonic() - started, screened.hash_seconds
        seconds["hash_cpu"] = screened.hash_cpu_seconds
        root, judged = self._judge_with_root(screened, seconds)
        reference = judged.reference if judged is not None else None
        missed = [a for a in self._attendance(screened) if a.lower() not in gone]  # inactive: no charge
        weights = (
            canonical_weights(screened, self.policy.screening.claim_cap) if self.policy.verified else None
        )
        line = judged.line if judged is not None and self.policy.scoring.from_line else 0.0
        overlaps = self._overlaps()
        inputs = ScoreInputs(self._previous, on_chain_round, screened, root, line, seconds)
        # A plain round's scores change neither its model nor the next round's start: with the commit
        # overlapped they are computed in its job, off the critical path, when they read only the updates.
        later = overlaps and not self.policy.verified and self.scoring.deferrable()
        if later:
            result, raw, scores = self.scoring.aggregate(inputs, weights), {}, {}
        else:
            (raw, scores), result = self.scoring.score_and_aggregate(inputs, weights)
        model, step = self._finished(result, reference, on_chain_round)
        verified, digest = None, None
        if self.policy.verified:
            verified, digest, missed = self._verified(context, screened, scores, model, step, missed, seconds)
        record = result.as_record(model)  # what Flower sends next; the app's evaluate_fn reads it too
        # What the report takes from this round, fixed now: the next round's start changes the gate.
        fields = self.metrics.report_fields(server_round, model, record)
        refused = dict(self.gate.round_refused)
        known = sorted(set(self.gate.known.values()))

        def commit_and_report(raw: dict[str, float], scores: dict[str, int]) -> None:
            if later:
                raw, scores = self.scoring.credited(inputs, result)
            commit = self.committer.commit(
                on_chain_round, model, scores, missed, sorted(screened.penalized), verified, digest
            )
            self._suspended_meanwhile = {a.lower() for a in commit.suspended}
            seen = (fields, refused, known)
            self._report(on_chain_round, screened, raw, scores, missed, commit, seen, step, seconds)

        if overlaps:
            self.commits.submit(lambda: commit_and_report(raw, scores))  # round r+1 trains meanwhile
        else:
            commit_and_report(raw, scores)
        return record, result.metrics

    def _finished(
        self, result: Aggregate, reference: float | None, on_chain_round: int
    ) -> tuple[Model, float]:
        """The model the round commits and sends on, and its step factor: the aggregate, noised if the
        backdoor filter adds noise, its step bounded to the size reference if configured."""
        model = result.model
        if result.aggregated and self._noise_bound > 0 and self.policy.backdoor.noise > 0:
            model = self._noised(model, on_chain_round)
        step = 1.0
        if reference is not None and self.policy.influence.step_ratio > 0:
            model, step = bound_step(model, self._previous, reference, self.policy.influence.step_ratio)
        return model, step

    def _verified(
        self,
        context: RoundContext,
        screened: Screened,
        scores: Mapping[str, int],
        model: Model,
        step: float,
        missed: list[str],
        seconds: dict[str, float],
    ) -> tuple[verified_round.VerifiedRound, bytes, list[str]]:
        """A verified round's manifest and blobs, the model's hash (hashed once: the manifest names it, the
        store files the model under it) and the missed list without the nodes that posted their claims."""
        started, cpu = time.monotonic(), time.thread_time()
        digest = hash_arrays(model)
        seconds["hash"] += time.monotonic() - started
        seconds["hash_cpu"] += time.thread_time() - cpu
        built = verified_round.build(
            context, screened, scores, self.committer.parent_hash, digest, self.rules, step
        )
        # Read last, just before the commit: a node that posted its claim is disclosed, never missed.
        posted = update_claims.posted_claims(self.committer.client, context.task, context.round)
        built, missed = verified_round.disclose_posted(built, posted, missed)
        return built, digest, missed

    def _screen(self, replies: Iterable[Message], gone: set[str], context: RoundContext) -> Screened:
        """Screen the replies; a node the previous round's overlapped commit suspended (`gone`, lowercase
        addresses) is dropped with that reason, neither scored nor charged."""
        admitted = {n: a for n, a in self.gate.admitted.items() if a.lower() not in gone}
        early, self._early = self._early, None
        try:
            screened = screen_replies(
                replies, admitted, self._previous, self.policy.screening, context, early
            )
        finally:
            if early is not None:
                early.close()
        for node_id, address in self.gate.admitted.items():
            if node_id not in admitted and node_id in screened.answered:
                screened.dropped.pop(f"node {node_id}", None)
                screened.dropped[address] = (
                    f"suspended by round {context.round - 1}'s commit while this round trained"
                )
        return screened

    def _overlaps(self) -> bool:
        """Whether this round's commit may run while the next round trains: only where nothing the next
        round's start reads depends on it (no finality wait, no rebase under way, no reputation-aware
        sampling, no fold holding nodes back: plain and verified modes) and the policy allows it."""
        committer = self.committer
        return (
            self.overlap
            and self.policy.overlap_commit
            and committer.wait_finalized <= 0
            and committer.rebased is None
            and self.options.selector is None
            and committer.writer.mode in (LedgerMode.PLAIN, LedgerMode.VERIFIED)
        )

    def _judge_with_root(
        self, screened: Screened, seconds: dict[str, float]
    ) -> tuple[np.ndarray | None, Judged | None]:
        """With the server's root update g0 (when this round has one), the anchored steps
        (coordinator/anchored_judging.py). Returns (g0, what the steps left), (None, None) without g0."""
        self._noise_bound = 0.0
        root, directions, waited = self._root.result()
        if root is None:
            return None, None
        seconds["anchor"] = waited  # waiting for the root training, if still running
        anchor, evidence = self.options.evaluation.root, self.options.evidence
        judged = judge_with_root(
            screened,
            root,
            directions,
            anchor,
            evidence,
            self.policy,
            self.gate.admitted,
            self._previous,
            seconds,
            self._history,
        )
        self._noise_bound = judged.noise_bound
        return root, judged

    def _noised(self, model: Model, on_chain_round: int) -> Model:
        """The aggregate with the backdoor filter's Gaussian noise (FLAME's lambda x the round's clipping
        bound), drawn from the run's seed and the round so a rerun draws the same (added block by block)."""
        seed = (self.options.seed, on_chain_round)
        return noised(model, self._previous, self._noise_bound, self.policy.backdoor.noise, seed)

    def _attendance(self, screened: Screened) -> list[str]:
        """Who was sampled and did not answer (sorted); the selector learns who did."""
        missed = sorted(a for n, a in self._selected.items() if n not in screened.answered)
        if self.options.selector is not None:
            answered = [a for n, a in self._selected.items() if n in screened.answered]
            self.options.selector.record(list(self._selected.values()), answered)
        return missed

    def _report(
        self,
        on_chain_round: int,
        screened: Screened,
        raw: Mapping[str, float],
        scores: Mapping[str, int],
        missed: list[str],
        commit: Commit,
        seen: tuple[Mapping[str, Any], Mapping[str, str], list[str]],
        step: float,
        seconds: dict[str, float],
    ) -> None:
        """Emit the round's report to the run events. `seen`: the model's metrics, the gate's refusals of
        the round and every node known, taken when the round was aggregated."""
        fields, refused, known = seen
        report = round_report(
            on_chain_round,
            screened,
            scores,
            raw,
            missed,
            refused,
            self.committer.reputations(known),
            fields,
            commit,
        )
        report.step_scaled = round(step, 4)
        report.seconds = {k: round(v, 3) for k, v in {**seconds, **commit.seconds}.items()}
        self.options.run_events.emit(report)

    def _directions_count(self, previous: Model, root: np.ndarray) -> bool:
        """Whether g0's direction is evidence this round. In anyone's Flower App (any model, any local
        training) only while g0 improves the 'loss' of the app's evaluate_fn (called with the model g0
        leads to): with long local training honest updates drift against an overfit g0 (cnn-digits, 10
        epochs: an honest node was suspended after 5 rounds without this). flchain's own tasks keep
        directions as evidence in every round, with a suspect line that moves down as g0 stops
        reproducing on the root set's halves (RootAnchor.direction_line, docs/late-calibration.md)."""
        evidence = self.options.evidence
        loss = self.metrics.app_loss(self._round) if self.app_directions else None
        if evidence is None or loss is None:
            return True
        return RootAnchor.improves(previous, root, loss, evidence.policy.min_root_improvement)
