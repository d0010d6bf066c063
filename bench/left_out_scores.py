"""Why an update left out of the aggregate scores 0 (scoring.left_out_zero, coordinator/train_round.py):
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
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import robustness  # noqa: E402
from score_line import cell_text  # noqa: E402

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
DEFENCE = "anchored (default)"
SETTINGS = {"left out: unscored (before)": False, "left out: scored 0 (default)": True}
KEEP = (
    "data",
    "attack",
    "fraction",
    "seed",
    "epochs",
    "final_accuracy",
    "attackers",
    "attackers_suspended",
    "honest_penalties",
    "honest_suspended",
    "honest_one_miss_from_suspension",
    "honest_min_reputation",
    "attackers_max_reputation",
    "attackers_rank_below_honest",
)


def main() -> None:
    """Run every cell in both settings, print the table, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "left-out-scores")
    args = parser.parse_args()
    console = Console()
    rows = []
    for data, attack, fraction, seed, epochs in CELLS:
        for name, zero in SETTINGS.items():
            console.print(f"{data}, {attack}, {fraction:.0%}, seed {seed}, {epochs} epochs, {name} ...")
            run = robustness.run_one(
                DEFENCE, data, attack, fraction, 30, seed, epochs, 10, {"scoring.left_out_zero": zero}
            )
            rows.append({"scores": name, **{k: run[k] for k in KEEP}})
    table = Table("data", "attack", "attackers", "seed", "epochs", *SETTINGS)
    lines = [
        "# Left-out updates score 0",
        "",
        "Measured by `bench/left_out_scores.py`: "
        + __doc__.split(chr(10), 1)[1].split("Writes")[0].strip().replace(chr(10), " "),
        "",
        "Per run: honest nodes that ended one missed round from suspension (*near*), the lowest honest",
        "final reputation, and with attackers the highest attacker's and the ledger's verdict:",
        "",
        "| data | attack | attackers | seed | epochs | " + " | ".join(SETTINGS) + " |",
        "|---|---|---:|---:|---:|" + "---|" * len(SETTINGS),
    ]
    for cell in CELLS:
        data, attack, fraction, seed, epochs = cell
        found = {
            r["scores"]: r
            for r in rows
            if (r["data"], r["attack"], r["seed"], r["epochs"]) == cell[:2] + cell[3:]
        }
        cells = [cell_text(found[name]) for name in SETTINGS]
        table.add_row(data, attack, f"{fraction:.0%}", str(seed), str(epochs), *cells)
        lines.append(
            f"| {data} | {attack} | {fraction:.0%} | {seed} | {epochs} | " + " | ".join(cells) + " |"
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
