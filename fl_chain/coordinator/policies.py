"""The coordinator's per-round rules (RoundPolicy), what a ChainStrategy runs with (ChainOptions), and
how a RunConfig turns into them, for flchain's own ServerApp and for ChainStrategy inside anyone's
ServerApp alike."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fl_chain.config import VERIFIABLE_STRATEGIES, RunConfig
from fl_chain.coordinator.deadline_grid import DeadlinePolicy
from fl_chain.coordinator.evaluation import Evaluation
from fl_chain.coordinator.screening import ScreeningPolicy
from fl_chain.defence.backdoor import BackdoorPolicy
from fl_chain.defence.evidence import EvidenceBook, EvidencePolicy
from fl_chain.defence.influence import InfluencePolicy
from fl_chain.defence.scoring import ScoringPolicy
from fl_chain.defence.selection import Selector
from fl_chain.errors import FlchainError
from fl_chain.protocol.task_rules import TaskRules, task_rules
from fl_chain.wire.report import RunEvents


@dataclass(frozen=True)
class RoundPolicy:
    """How the coordinator runs a round around the wrapped strategy."""

    min_nodes: int = 1
    start_nodes: int = 0  # admitted nodes the first round waits for (0: min_nodes)
    auth_timeout: float = 120.0  # how long to wait for `min_nodes` verified nodes
    screening: ScreeningPolicy = field(default_factory=ScreeningPolicy)
    scoring: ScoringPolicy = field(default_factory=ScoringPolicy)
    influence: InfluencePolicy = field(default_factory=InfluencePolicy)
    backdoor: BackdoorPolicy = field(default_factory=BackdoorPolicy)  # the root-cluster filter (needs a root)
    round_seconds: float = 0.0  # > 0: size each node's local work to its declared samples/s
    batch_size: int = 32
    deadline: DeadlinePolicy = field(default_factory=DeadlinePolicy)  # when a round stops waiting
    verified: bool = False  # commit the node-signed updates' root; aggregate with defence/derivation.py
    overlap_commit: bool = True  # round r's commit runs while round r+1 trains (commit_pipeline.py)


@dataclass(frozen=True)
class ChainOptions:
    """What a ChainStrategy runs its rounds with, besides the wrapped strategy and the task."""

    evaluation: Evaluation = field(default_factory=Evaluation)
    policy: RoundPolicy = field(default_factory=RoundPolicy)
    run_events: RunEvents = field(default_factory=RunEvents)
    selector: Selector | None = None  # reputation x reliability sampling; None: the wrapped strategy's
    evidence: EvidenceBook | None = None  # anchored evidence of harm (needs evaluation.root)
    gate_fraction: float | None = None  # the join gate draws each round's sample (coordinator/gate.py)
    seed: int = 0  # the gate's draw


def effective_policy(policy: RoundPolicy, strategy_name: str, has_root: bool) -> RoundPolicy:
    """`policy` as a round can run it around the strategy named `strategy_name`: a verified round needs
    a strategy validators re-derive (else a one-line error) and signed updates (each one is disclosed);
    FLTrust scores need the root set, cosine scores stand in without one."""
    if policy.verified and strategy_name not in VERIFIABLE_STRATEGIES:
        raise FlchainError(
            f"verified rounds re-derive FedAvg: wrap {' or '.join(VERIFIABLE_STRATEGIES)}, "
            f'not {strategy_name} (or set ledger.mode = "plain")'
        )
    if policy.verified and policy.backdoor.enabled and policy.backdoor.noise > 0:
        raise FlchainError(
            "verified rounds re-derive the aggregate: the backdoor filter's noise cannot be re-derived "
            '(set scoring.backdoor_noise = 0 or ledger.mode = "plain")'
        )
    if policy.verified and not policy.screening.require_signed:
        policy = replace(policy, screening=replace(policy.screening, require_signed=True))
    if not has_root and policy.scoring.method == "fltrust":
        policy = replace(policy, scoring=replace(policy.scoring, method="cosine"))
    return policy


def rules_of(policy: RoundPolicy) -> TaskRules:
    """The task rules of an (effective) policy: what validators re-derive its verified rounds with, fixed
    on-chain with the task (protocol/task_rules.py). An unknown scoring method is a one-line error."""
    return task_rules(
        policy.scoring.method,
        policy.screening.claim_cap,
        policy.influence.clip_ratio,
        policy.influence.step_ratio,
        "the task's rules",
    )


def effective_rules(options: ChainOptions, strategy_name: str) -> TaskRules:
    """The rules a ChainStrategy wrapping `strategy_name` with `options` runs its rounds by (its effective
    policy's): what its task records on-chain."""
    return rules_of(effective_policy(options.policy, strategy_name, options.evaluation.root is not None))


def gate_samples(config: RunConfig) -> bool:
    """Whether the join gate draws each round's sample (uniform selection, fraction_train < 1): then
    only sampled nodes are challenged and checked on-chain, so a round's cost does not grow with the
    number of connected nodes (coordinator/gate.py)."""
    return config.selection.mode == "uniform" and config.federation.fraction_train < 1.0


def run_options(config: RunConfig, evaluation: Evaluation, run_events: RunEvents) -> ChainOptions:
    """flchain's own ServerApp: every rule from the run configuration."""
    return ChainOptions(
        evaluation,
        round_policy(config),
        run_events,
        selector_for(config),
        evidence_book(config),
        config.federation.fraction_train if gate_samples(config) else None,
        config.task.seed,
    )


def ledger_options(config: RunConfig, evaluation: Evaluation, run_events: RunEvents) -> ChainOptions:
    """ChainStrategy in anyone's ServerApp (a LedgerSession's config): the wrapped strategy samples, and
    evidence is gathered only with a root set."""
    evidence = evidence_book(config) if evaluation.root is not None else None
    return ChainOptions(evaluation, round_policy(config), run_events, evidence=evidence)


def evidence_book(config: RunConfig) -> EvidenceBook | None:
    """The run's book of anchored evidence, when `scoring.evidence` is on."""
    sc = config.scoring
    if not sc.evidence:
        return None
    return EvidenceBook(
        EvidencePolicy(
            window=sc.evidence_window,
            needed=sc.evidence_needed,
            long_window=sc.evidence_long_window,
            long_needed=sc.evidence_long_needed,
        )
    )


def round_policy(config: RunConfig) -> RoundPolicy:
    """The coordinator's per-round rules from the run configuration."""
    sc = config.scoring
    return RoundPolicy(
        min_nodes=config.federation.min_nodes,
        start_nodes=config.federation.start_nodes,
        auth_timeout=config.federation.auth_timeout,
        screening=ScreeningPolicy(
            sc.max_update_norm,
            reject_outliers=sc.reject_outliers,
            outlier_norm_ratio=sc.outlier_norm_ratio,
            claim_cap=sc.claim_cap,
            require_signed=config.ledger.mode == "verified",
        ),
        # trust aggregation rescales every update to |g0| (coordinator/trust_strategy.py): a clip before it
        # would change nothing, so it is not applied
        influence=InfluencePolicy(
            sc.clip_ratio, sc.step_ratio, 0.0 if config.federation.aggregation == "trust" else sc.median_clip
        ),
        backdoor=BackdoorPolicy(sc.backdoor_filter, sc.backdoor_noise, sc.backdoor_history),
        scoring=ScoringPolicy(sc.method, sc.shapley_budget, config.task.seed, sc.from_line, sc.left_out_zero),
        round_seconds=config.selection.round_seconds,
        batch_size=config.task.batch_size,
        deadline=DeadlinePolicy(
            config.federation.round_timeout_floor, config.federation.round_timeout_factor
        ),
        verified=config.ledger.mode == "verified",
        overlap_commit=config.federation.overlap_commit,
    )


def selector_for(config: RunConfig) -> Selector | None:
    """Reputation x reliability sampling, or None when the wrapped strategy samples."""
    if config.selection.mode != "reputation":
        return None
    sel = config.selection
    return Selector(
        fraction=config.federation.fraction_train,
        min_nodes=config.federation.min_nodes,
        sharpness=sel.sharpness,
        exploration=sel.exploration,
        seed=config.task.seed,
    )
