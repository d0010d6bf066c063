"""What the verified-round tests share: a verified task under the tests' rules with its round 0 committed,
a validator quorum for it, and one round derived the way ChainStrategy derives it (canonical weights,
cosine scores, FedAvg, the manifest), so each test only says how its coordinator or nodes behave."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fl_chain.chain import quorum
from fl_chain.chain.client import ChainClient
from fl_chain.chain.setup import bootstrap
from fl_chain.config import RunConfig
from fl_chain.coordinator import verified_round
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.screening import Screened
from fl_chain.defence import derivation
from fl_chain.defence.scoring import ScoringPolicy, score_round
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.task_rules import task_rules
from fl_chain.protocol.update_signing import RoundContext
from fl_chain.store import ModelStore
from fl_chain.verify.validator import Validator

RULES = task_rules("cosine", 2.0, 0.0, 0.0, "rules")  # the task's rules: cosine scores, claims capped at 2x

Model = dict[str, np.ndarray]


def open_verified_task(
    client: ChainClient, coordinator, store: Path, config: bytes, seed: int
) -> tuple[RoundCommitter, Model]:
    """A verified task under RULES whose round 0 is a seeded 6x4 model (committed), and that model."""
    committer = RoundCommitter.new_task(
        client, coordinator, ModelStore(store), config, mode="verified", rules=RULES
    )
    rng = np.random.default_rng(seed)
    model = {"w": rng.normal(size=(6, 4)).astype(np.float32), "b": np.zeros(4, np.float32)}
    committer.commit(0, model)
    return committer, model


def quorum_validators(client: ChainClient, admin, task: int, count: int = 3) -> list[Validator]:
    """`count` new validators of `task` (evaluating every model at 0.5), with the quorum set to 2."""
    client.transact(admin, quorum.quorum_contract(client).functions.setQuorum(2))
    return [
        Validator(client, account, lambda rnd, arrays: 0.5, task=task)
        for account in bootstrap.new_validators(client, count)
    ]


def derive(
    context: RoundContext, screened: Screened, model: Model, parent: bytes
) -> tuple[Model, dict[str, int], verified_round.VerifiedRound]:
    """The round an honest coordinator derives from `screened` on top of `model`: the new model, its
    scores and the verified round (manifest and blobs) to commit."""
    weights = verified_round.canonical_weights(screened, RULES.claim_cap)
    _, scores = score_round(
        ScoringPolicy("cosine"), model, screened.updates, screened.weights, None, context.round
    )
    new = derivation.aggregate(model, screened.updates, weights)
    built = verified_round.build(context, screened, scores, parent, hash_arrays(new), RULES, 1.0)
    return new, scores, built


def verified_demo_config(rounds: int) -> RunConfig:
    """The demo's configuration for a short verified run whose scores the validators recompute."""
    config = RunConfig()
    config.federation.rounds = rounds
    config.task.local_epochs = 1
    config.ledger.mode = "verified"
    config.scoring.method = "cosine"
    return config
