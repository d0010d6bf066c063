"""`flchain demo` on Flower's Simulation Engine, as users run it, on anvil and on ganache; and a
malformed reply being dropped while the round still commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fl_chain.config import RunConfig
from fl_chain.demo import run_demo


@pytest.mark.parametrize("backend", ["anvil", "ganache"])
def test_demo_reaches_90_percent_and_commits_every_round(backend: str, tmp_path: Path) -> None:
    home = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "fl_chain", "demo", "--clients", "5", "--rounds", "3", "--backend", backend,
         "--home", str(home)],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((home / "demo-result.json").read_text())
    reports = summary["reports"]
    assert [r["round"] for r in reports] == [0, 1, 2, 3]
    assert reports[-1]["accuracy"] >= 0.90
    assert all(len(r["participants"]) == 5 for r in reports[1:])
    assert all(r["signed"] == r["participants"] for r in reports[1:])  # every update signed by its node
    assert not any(r["suspended"] or r["penalized"] for r in reports)  # honest nodes keep their standing
    assert "chain holds 4 rounds (0-3)" in result.stdout
    assert (home / "accuracy.png").stat().st_size > 1000
    for report in reports:  # every committed hash names a blob in the store
        assert (home / "store" / report["model_hash"][2:]).exists()


def test_malformed_replies_are_dropped_and_the_round_commits(tmp_path: Path) -> None:
    config = RunConfig()
    config.federation.rounds = 1
    config.task.local_epochs = 1
    attacks = {0: {"kind": "nan"}, 1: {"kind": "wrong-shape"}}
    config.federation.min_nodes = 4  # the round waits for all four, however slowly they join
    result = run_demo(config, 4, tmp_path / "demo", attacks=attacks, plot=False)
    assert result.chain_rounds == 2
    last = result.reports[-1]
    assert len(last.participants) == 2 and len(last.dropped) == 2
    reasons = sorted(last.dropped.values())
    assert any("NaN or Inf" in r for r in reasons) and any("has shape" in r for r in reasons)
    assert set(last.dropped) == {result.nodes[0], result.nodes[1]}
    assert set(last.participants) == {result.nodes[2], result.nodes[3]}


def test_hostile_example_counts_are_penalized_and_every_round_commits(tmp_path: Path) -> None:
    """Nodes claiming inf, nan, -1 and 2**60 examples for honest updates (a buggy or hostile app): every
    round still commits, each of them is dropped with the reason and penalized, the honest nodes count."""
    config = RunConfig()
    config.federation.rounds = 2
    config.task.local_epochs = 1
    lies = [float("inf"), float("nan"), -1, 2**60]  # 2**60 fits the wire's int64, not a count
    attacks = {i: {"kind": "lie-examples", "value": value} for i, value in enumerate(lies)}
    config.federation.min_nodes = 6  # every round waits for all six, however slowly they join
    result = run_demo(config, 6, tmp_path / "demo", attacks=attacks, plot=False)
    assert result.chain_rounds == 3  # round 0 and both training rounds
    liars, honest = set(result.nodes[:4]), set(result.nodes[4:])
    for report in result.reports[1:]:
        assert set(report.participants) == honest
        assert set(report.dropped) == liars
        assert all("num-examples" in reason for reason in report.dropped.values()), report.dropped
        assert liars <= set(report.penalized)


def test_a_verified_demo_is_rederived_by_every_validator_and_finalized(tmp_path: Path) -> None:
    """Verified rounds on the Simulation Engine: the nodes sign, the coordinator commits the updates root
    and publishes update blobs and manifest, both validators re-derive each round before attesting (round 0,
    the initial model, is a plain round: attested by evaluation alone), every round finalizes, and the
    audit re-derives every round too."""
    from fl_chain.chain.setup import bootstrap
    from fl_chain.verify.audit import audit_task
    from fl_chain.verify.validator import Attestation

    config = RunConfig()
    config.federation.rounds = 2
    config.task.local_epochs = 1
    config.ledger.mode = "verified"
    config.scoring.method = "cosine"  # scores the validators recompute exactly
    home = tmp_path / "demo"
    home.mkdir()
    local = bootstrap.start_local(home, "anvil")
    try:
        result = run_demo(config, 3, home, plot=False, validators=2, local=local)
        findings = audit_task(local.client, result.task)
    finally:
        local.stop()
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert [f.where for f in findings if f.check == "derivation"] == ["task 1 round 1", "task 1 round 2"]
    assert result.chain_rounds == 3
    verdicts = result.extra["attestations"]
    assert all(isinstance(v, Attestation) for v in verdicts), verdicts  # no dispute of an honest run
    assert sorted(a.round for a in verdicts) == [0, 0, 1, 1, 2, 2]  # both validators, every round
    assert all((a.derivation_seconds > 0) == (a.round > 0) for a in verdicts)
    assert all("finalize" in r.seconds for r in result.reports[1:])
    for report in result.reports[1:]:
        assert report.updates_root.startswith("0x") and report.published_bytes > 0
        assert report.signed == report.participants and len(report.participants) == 3
    assert len(list((home / "store" / "updates").iterdir())) == 6  # 3 nodes x 2 rounds, kept private
    assert len(list((home / "store" / "rounds").glob("t*.json"))) == 2  # the manifests
    assert len(list((home / "store" / "rounds").glob("rules-*.json"))) == 1  # the task's rules
