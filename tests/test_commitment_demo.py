"""Commitment mode end to end on Flower's Simulation Engine: the demo's coordinator commits one root per
round, two validators check every round's leaves and re-compute every reputation checkpoint, a node
that keeps sending malformed replies is suspended in the registry once the checkpoint holding its
suspension is finalized, `flchain audit` is clean, and a node fetches its own proof with the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fl_chain.chain import checkpoints, registry
from fl_chain.config import RunConfig
from fl_chain.demo import run_demo
from fl_chain.verify.audit import audit_task
from fl_chain.verify.validator import Attestation, CheckpointVerdict


def test_a_commitment_demo_is_checked_by_the_validators_and_suspends_by_checkpoint(tmp_path: Path) -> None:
    from fl_chain.chain.setup import bootstrap

    config = RunConfig()
    config.federation.rounds = 2
    config.task.local_epochs = 1
    config.ledger.mode = "commitment"
    home = tmp_path / "demo"
    home.mkdir()
    local = bootstrap.start_local(home, "anvil")
    try:
        result = run_demo(
            config, 5, home, attacks={0: {"kind": "nan"}}, plot=False, validators=2, local=local
        )
        client = local.client
        findings = audit_task(client, result.task)
        bad = result.nodes[0]
        status = registry.status_of(client, bad)
        latest = checkpoints.latest(client, result.task)
        cli = subprocess.run(
            [sys.executable, "-m", "fl_chain", "node", "proof", result.nodes[1], "--task", str(result.task),
             "--home", str(home), "--json", str(tmp_path / "proof.json")],
            capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        refused = subprocess.run(
            [sys.executable, "-m", "fl_chain", "node", "proof", result.nodes[1], "--task", "99",
             "--home", str(home)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        local.stop()
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    checks = {f.check for f in findings}
    assert {"outcomes", "checkpoints", "suspensions"} <= checks
    assert [f.where for f in findings if f.check == "outcomes"] == [
        f"task {result.task} round {r}" for r in (0, 1, 2)
    ]
    for report in result.reports[1:]:
        assert report.outcomes_root.startswith("0x") and report.checkpoint > 0
        assert report.gas < 150_000  # flat: no per-participant write
        assert report.penalized == [bad]
    assert result.reports[2].suspended == [bad]  # the second penalty takes it below the threshold
    assert status == "Suspended"  # applied to the registry once its checkpoint was finalized
    assert latest is not None and latest.through_round == 2 and latest.finalized
    verdicts = result.extra["attestations"]
    assert not [v for v in verdicts if not isinstance(v, Attestation | CheckpointVerdict)], verdicts
    assert sorted(v.round for v in verdicts if isinstance(v, Attestation)) == [0, 0, 1, 1, 2, 2]
    judged = [v for v in verdicts if isinstance(v, CheckpointVerdict)]
    assert len(judged) == 4 and all(v.attested for v in judged)  # 2 checkpoints x 2 validators
    assert sum(bad in v.suspended for v in judged) == 1
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "verified on-chain" in cli.stdout and "active" in cli.stdout
    proof = json.loads((tmp_path / "proof.json").read_text())
    assert proof["node"].lower() == result.nodes[1].lower() and proof["active"] is True and proof["proof"]
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "task 99 has no finalized reputation checkpoint" in refused.stdout + refused.stderr
