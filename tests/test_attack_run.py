"""A short attack run on the Simulation Engine with on-chain reputation: attackers end below every
honest node, are suspended by the contract, and the model still learns."""

from __future__ import annotations

from pathlib import Path

from fl_chain.config import RunConfig
from fl_chain.demo import run_demo


def test_attackers_end_with_lower_reputation_than_every_honest_node(tmp_path: Path) -> None:
    config = RunConfig()
    config.federation.rounds = 3
    config.task.local_epochs = 2
    config.scoring.method = "cosine"
    config.scoring.reject_outliers = True
    config.selection.mode = "reputation"
    attacks = {0: {"kind": "sign-flip", "seed": 0}, 1: {"kind": "sign-flip", "seed": 1}}
    result = run_demo(config, 6, tmp_path / "demo", attacks=attacks, plot=False)
    attackers, honest = result.nodes[:2], result.nodes[2:]
    final = result.reports[-1].reputations
    assert max(final[a] for a in attackers) < min(final[h] for h in honest)
    suspended = {n for r in result.reports for n in r.suspended}
    assert suspended == set(attackers)
    penalized = {n for r in result.reports for n in r.penalized}
    assert penalized == set(attackers)
    assert result.reports[-1].accuracy > result.reports[0].accuracy + 0.3
