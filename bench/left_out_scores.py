"""Why an update left out of the aggregate scores 0 (scoring.left_out_zero, coordinator/round_scoring.py):
the default defence with left-out updates unscored (their nodes' reputations untouched that round) and
scored 0, side by side on the same runs. The periodic sign-flipper is left out in the rounds it flips
while the model still learns (its flip is suspect then); unscored, its reputation stood still in them,
scored 0 it falls. Whether that changes where attackers end after 30 rounds, and what it costs honest
nodes (a score cannot suspend, Reputation.sol: at most standing), say clean runs on IID, Dirichlet 0.3
and Dirichlet 0.1 (at 1 local epoch, where single-label honest nodes sit nearest the line) and attacked
runs on each split. 30 rounds, 10 nodes, as the grid (bench/robustness_attacks.py).
Writes docs/left-out-scores.md and .json.
Usage: .venv/bin/python bench/left_out_scores.py [--out docs/left-out-scores]   (~13 min)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import robustness  # noqa: E402
from score_line import paired_report, run_pairs  # noqa: E402

CELLS = (  # data, attack, fraction, seed, local epochs
    ("IID", "none", 0.0, 0, 3),
    ("IID", "none", 0.0, 1, 3),
    ("Dir 0.3", "none", 0.0, 0, 1),
    ("Dir 0.1", "none", 0.0, 0, 1),
    ("Dir 0.1", "none", 0.0, 0, 3),
    ("IID", "periodic sign-flip (every 3rd)", 0.3, 0, 3),
    ("IID", "periodic sign-flip (every 3rd)", 0.3, 1, 3),
    ("IID", "periodic sign-flip (every 3rd)", 0.3, 2, 3),
    ("Dir 0.3", "periodic sign-flip (every 3rd)", 0.3, 0, 3),
    ("Dir 0.1", "periodic sign-flip (every 3rd)", 0.3, 0, 3),
    ("IID", "Min-Max (std, jitter 0.1)", 0.3, 0, 3),
    ("IID", "adaptive (inside thresholds)", 0.3, 0, 3),
)
SETTINGS = {"left out: unscored (before)": False, "left out: scored 0 (default)": True}


def main() -> None:
    """Run every cell in both settings, print the table, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "left-out-scores")
    args = parser.parse_args()
    console = Console()
    rows = run_pairs(CELLS, SETTINGS, "scoring.left_out_zero", console)
    table, lines = paired_report(
        "Left-out updates score 0", "bench/left_out_scores.py", __doc__, CELLS, SETTINGS, rows
    )
    lines.append("")
    for name in SETTINGS:
        mine = [r for r in rows if r["scores"] == name]
        near = sum(r["honest_one_miss_from_suspension"] for r in mine)
        attacked = [r for r in mine if r["attackers"]]
        ranked = sum(bool(r["attackers_rank_below_honest"]) for r in attacked)
        penalties = sum(r["honest_penalties"] + r["honest_suspended"] for r in mine)
        lines.append(
            f"- {name}: {near} honest nodes near suspension over {len(mine)} runs; every attacker ranked "
            f"below every honest node in {ranked} of {len(attacked)} attacked runs; honest penalties and "
            f"suspensions {penalties}."
        )
    moved = [
        f"{a['data']} {a['attack']} seed {a['seed']}: {a['final_accuracy']:.1%} -> {b['final_accuracy']:.1%}"
        for a, b in zip(rows[::2], rows[1::2], strict=True)
        if abs(a["final_accuracy"] - b["final_accuracy"]) > 1e-9
    ]
    lines += [
        "",
        "Scores change reputations only (selection is uniform by default): final accuracy "
        + ("identical in every pair." if not moved else "moved in " + "; ".join(moved) + "."),
    ]
    console.print(table)
    robustness.write_results(args.out, rows, lines, console)


if __name__ == "__main__":
    main()
