"""The coordinator's per-round rules (RoundPolicy) and how a RunConfig turns into them, for flchain's own
ServerApp and for ChainStrategy inside anyone's ServerApp alike."""

from __future__ import annotations

from dataclasses import dataclass, field

from fl_chain.config import RunConfig
from fl_chain.coordinator.deadline_grid import DeadlinePolicy
from fl_chain.coordinator.screening import ScreeningPolicy
from fl_chain.defence.evidence import EvidenceBook, EvidencePolicy
from fl_chain.defence.influence import InfluencePolicy
from fl_chain.defence.scoring import ScoringPolicy
from fl_chain.defence.selection import Selector


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
    deadline: DeadlinePolicy = field(default_factory=DeadlinePolicy)  # when a round stops waiting
    verified: bool = False  # commit the node-signed updates' root; aggregate with fl/derivation.py


def evidence_book(config: RunConfig) -> EvidenceBook | None:
    """The run's book of anchored evidence, when `scoring.evidence` is on."""
    sc = config.scoring
    if not sc.evidence:
        return None
    return EvidenceBook(EvidencePolicy(window=sc.evidence_window, needed=sc.evidence_needed))


def round_policy(config: RunConfig) -> RoundPolicy:
    """The coordinator's per-round rules from the run configuration."""
    sc = config.scoring
    return RoundPolicy(
        min_nodes=config.federation.min_nodes,
        auth_timeout=config.federation.auth_timeout,
        screening=ScreeningPolicy(
            sc.max_update_norm,
            reject_outliers=sc.reject_outliers,
            outlier_norm_ratio=sc.outlier_norm_ratio,
            claim_cap=sc.claim_cap,
            require_signed=config.ledger.mode == "verified",
        ),
        influence=InfluencePolicy(sc.clip_ratio, sc.step_ratio),
        scoring=ScoringPolicy(sc.method, sc.shapley_budget, config.task.seed),
        round_seconds=config.selection.round_seconds,
        batch_size=config.task.batch_size,
        deadline=DeadlinePolicy(
            config.federation.round_timeout_floor, config.federation.round_timeout_factor
        ),
        verified=config.ledger.mode == "verified",
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
