"""Can a validator check scores it cannot recompute? `fltrust` (the default), `loss-delta`, `loo` and
`gtg-shapley` need the coordinator's root or validation data. The closest a validator can get is to score
the same updates on its own held-out data (loss-delta: each update applied alone, normalised per round
like every score) and dispute a leaf whose score is far from its own. This measures how far apart the
two are in honest rounds, and how many cooked scores a tolerance would catch.

Runs the verified demo (digits MLP, the default fltrust scores, evidence and step bound) on IID and
Dirichlet partitions, with and without sign-flipping attackers; then, for every included leaf of every
round, scores the same updates the way a validator does (loss-delta on the held-out split it evaluates
on) and records |validator score - leaf score| / SCALE. A cooked score is the honest leaf set to 0 (a
useful node robbed) or to SCALE (a useless one boosted). Prints a table and writes
docs/score-tolerance.md and .json.
Usage: .venv/bin/python bench/score_tolerance.py [--clients 8] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fl_chain.config import RunConfig  # noqa: E402
from fl_chain.defence.derivation import clip_update  # noqa: E402
from fl_chain.defence.scoring import ScoringPolicy, score_round  # noqa: E402
from fl_chain.demo import run_demo  # noqa: E402
from fl_chain.protocol.fixedpoint import SCALE  # noqa: E402
from fl_chain.protocol.manifest import parse_manifest  # noqa: E402
from fl_chain.store import arrays_from_bytes  # noqa: E402
from fl_chain.tasks import load_task  # noqa: E402

TOLERANCE = 0.5  # the gap (in units of SCALE) a check would accept as agreement


def own_scores(previous, clipped, loss_of) -> dict[str, int]:
    """The validator's own loss-delta scores of the included (clipped) updates, on its own data."""
    order = sorted(clipped, key=str.lower)
    updates = {w: clipped[w] for w in order}
    _, scores = score_round(
        ScoringPolicy("loss-delta"), previous, updates, dict.fromkeys(order, 1.0), loss_of, 0
    )
    return scores


SETTINGS = (
    ("IID", None, 0.0),
    ("Dirichlet 0.3", 0.3, 0.0),
    ("Dirichlet 0.1", 0.1, 0.0),
    ("IID, 25 % sign flippers", None, 0.25),
    ("Dirichlet 0.3, 25 % sign flippers", 0.3, 0.25),
)


def gaps_of_run(label: str, alpha: float | None, attackers: float, clients: int, rounds: int) -> dict:
    """Honest gaps, and the gaps a cooked score would show, over every leaf of one run."""
    config = RunConfig()
    config.federation.rounds = rounds
    config.ledger.mode = "verified"
    if alpha is not None:
        config.task.partitioning, config.task.alpha = "dirichlet", alpha
    attacks = {i: {"kind": "sign-flip"} for i in range(round(clients * attackers))}
    task = load_task(config.task.name)
    model = task.build_model(0)
    held_out = task.server_data(config.task.seed)[1]

    def loss_of(arrays) -> float:
        from fl_chain.tasks.training import evaluate, set_arrays

        set_arrays(model, arrays)
        return evaluate(model, *held_out)[0]

    honest, robbed, boosted = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "demo"
        run_demo(config, clients, home, attacks=attacks, plot=False)
        store = home / "store"
        for path in sorted((store / "rounds").iterdir()):
            manifest = parse_manifest(path.read_bytes(), str(path))
            previous = arrays_from_bytes((store / manifest.parent[2:]).read_bytes())
            clipped = {
                e.node: clip_update(
                    previous, arrays_from_bytes((store / "updates" / e.update[2:]).read_bytes()), e.clip
                )
                for e in manifest.included
            }
            if not clipped:
                continue
            mine = own_scores(previous, clipped, loss_of)
            for e in manifest.included:
                honest.append(abs(mine[e.node] - e.score) / SCALE)
                robbed.append(abs(mine[e.node] - 0) / SCALE if e.score > 0 else None)
                boosted.append(abs(mine[e.node] - SCALE) / SCALE if e.score < SCALE else None)
    robbed = [g for g in robbed if g is not None]
    boosted = [g for g in boosted if g is not None]
    return {
        "setting": label,
        "leaves": len(honest),
        "honest_max": max(honest, default=0.0),
        "honest_median": float(np.median(honest)) if honest else 0.0,
        "robbed_caught": sum(g > TOLERANCE for g in robbed) / len(robbed) if robbed else None,
        "boosted_caught": sum(g > TOLERANCE for g in boosted) / len(boosted) if boosted else None,
        "false_disputes": sum(g > TOLERANCE for g in honest),
    }


def main() -> None:
    """Measure and report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    rows = [gaps_of_run(label, alpha, att, args.clients, args.rounds) for label, alpha, att in SETTINGS]
    table = Table(title=f"coordinator (fltrust) vs validator (own loss-delta) scores, tolerance {TOLERANCE}")
    cols = (
        "setting",
        "leaves",
        "honest gap median",
        "honest gap max",
        "false disputes",
        "robbed caught",
        "boosted caught",
    )
    for col in cols:
        table.add_column(col, justify="right")
    lines = [
        "# Score tolerance: what a validator can check of scores it cannot recompute",
        "",
        f"Measured by `bench/score_tolerance.py`: the verified demo ({args.clients} nodes, "
        f"{args.rounds} rounds, "
        "default fltrust scores) per setting; every included leaf's score compared with the validator's own "
        "loss-delta score on its held-out split. Gap = |validator - leaf| / SCALE. A *robbed* leaf is an "
        "honest leaf with score set to 0, a *boosted* one set to SCALE (1.0); *caught* = the share whose gap "
        f"then exceeds a tolerance of {TOLERANCE}; *false disputes* = honest leaves beyond it.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.0f} %"

    for r in rows:
        cells = (
            r["setting"],
            str(r["leaves"]),
            f"{r['honest_median']:.2f}",
            f"{r['honest_max']:.2f}",
            str(r["false_disputes"]),
            pct(r["robbed_caught"]),
            pct(r["boosted_caught"]),
        )
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Conclusion: a validator's own view of usefulness does not agree with the coordinator's fltrust",
        "scores closely enough to judge them. Honest gaps span the whole range (an update that helps the",
        "global model through the server's root direction can still raise the loss when applied alone,",
        "above all on non-IID data), so any tolerance that catches a cooked score also disputes honest",
        "rounds. Validators therefore do not dispute such scores: they re-derive the model and the",
        "`cosine` and `data-size` scores exactly, and judge the model's quality on their own data.",
        'A run that needs its scores checked uses `scoring.method = "cosine"` with verified rounds.',
    ]
    Console().print(table)
    (ROOT / "docs" / "score-tolerance.md").write_text("\n".join(lines) + "\n")
    (ROOT / "docs" / "score-tolerance.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
