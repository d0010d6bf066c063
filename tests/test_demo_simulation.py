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
    result = run_demo(config, 4, tmp_path / "demo", attacks=attacks, plot=False)
    assert result.chain_rounds == 2
    last = result.reports[-1]
    assert len(last.participants) == 2 and len(last.dropped) == 2
    reasons = sorted(last.dropped.values())
    assert any("NaN or Inf" in r for r in reasons) and any("has shape" in r for r in reasons)
    assert set(last.dropped) == {result.nodes[0], result.nodes[1]}
    assert set(last.participants) == {result.nodes[2], result.nodes[3]}


def test_demo_with_validators_finalizes_every_round(tmp_path: Path) -> None:
    config = RunConfig()
    config.federation.rounds = 2
    config.task.local_epochs = 1
    result = run_demo(config, 3, tmp_path / "demo", plot=False, validators=2)
    assert result.chain_rounds == 3
    attested = result.extra["attestations"]
    assert sorted(a.round for a in attested) == [0, 0, 1, 1, 2, 2]  # both validators, every round
    assert all("finalize" in r.seconds for r in result.reports[1:])
