"""Why fltrust scores are measured from the round's suspect line (scoring.from_line, defence/scoring.py):
the default defence with FLTrust's own ReLU(cos(update, g0)) (from 0) and with ReLU(cos - line), side by
side on the same runs. Once the model has converged, honest cosines with g0 fall to about 0 or below;
scored from 0, honest nodes then sink to the suspension threshold, where one missed round (x 0.9) suspends
them. Clean runs on IID and Dirichlet(0.1) data say how many honest nodes end there; the adaptive attacker
(0.01 above the suspect cosine, clipped by the median clip every round) and the periodic sign-flipper at
30 % on IID say whether the ledger still ranks attackers below every honest node. Both settings credit a
clipped update for the share that was aggregated. 30 rounds, 10 nodes, 3 local epochs (and one clean
Dirichlet(0.1) cell at 1, where single-label nodes sit near the line), as the grid
(bench/robustness_attacks.py). Writes docs/score-line.md and .json.
Usage: .venv/bin/python bench/score_line.py [--out docs/score-line]   (~7 min)
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

CELLS = (  # data, attack, fraction, seed, local epochs
    ("IID", "none", 0.0, 0, 3),
    ("IID", "none", 0.0, 1, 3),
    ("IID", "none", 0.0, 2, 3),
    ("Dir 0.1", "none", 0.0, 0, 3),
    ("Dir 0.1", "none", 0.0, 0, 1),
    ("IID", "adaptive (inside thresholds)", 0.3, 0, 3),
    ("IID", "adaptive (inside thresholds)", 0.3, 1, 3),
    ("IID", "adaptive (inside thresholds)", 0.3, 2, 3),
    ("IID", "periodic sign-flip (every 3rd)", 0.3, 1, 3),
)
DEFENCE = "anchored (default)"
SETTINGS = {"from 0 (FLTrust's own)": False, "from the line (default)": True}


def cell_text(run: dict) -> str:
    """One run's reputation figures: honest nodes one miss from suspension, the lowest honest final
    reputation and, with attackers, the highest attacker's and whether all rank below every honest one."""
    text = f"{run['honest_one_miss_from_suspension']} near, honest min {run['honest_min_reputation']:.2f}"
    if run["attackers"]:
        ranked = "ranked below" if run["attackers_rank_below_honest"] else "not ranked below"
        text += f", attackers max {run['attackers_max_reputation']:.2f}, {ranked}"
    return text


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


def run_pairs(cells: tuple, settings: dict[str, object], field: str, console: Console) -> list[dict]:
    """Each cell (data, attack, fraction, seed, local epochs) run under each setting of the configuration
    `field` ("section.name"), 30 rounds on 10 nodes with the default defence: one row per run, its
    setting's name under "scores"."""
    rows = []
    for data, attack, fraction, seed, epochs in cells:
        for name, value in settings.items():
            console.print(f"{data}, {attack}, {fraction:.0%}, seed {seed}, {epochs} epochs, {name} ...")
            run = robustness.run_one(DEFENCE, data, attack, fraction, 30, seed, epochs, 10, {field: value})
            rows.append({"scores": name, **{k: run[k] for k in KEEP}})
    return rows


def paired_report(
    title: str, script: str, doc: str, cells: tuple, settings: dict[str, object], rows: list[dict]
) -> tuple[Table, list[str]]:
    """The console table and the report's lines of `run_pairs`' rows: the title, what `script` measures
    (`doc`, the bench's docstring up to "Writes"), one row per cell with each setting's reputation
    figures side by side."""
    table = Table("data", "attack", "attackers", "seed", "epochs", *settings)
    lines = [
        f"# {title}",
        "",
        f"Measured by `{script}`: "
        + doc.split(chr(10), 1)[1].split("Writes")[0].strip().replace(chr(10), " "),
        "",
        "Per run: honest nodes that ended one missed round from suspension (*near*), the lowest honest",
        "final reputation, and with attackers the highest attacker's and the ledger's verdict:",
        "",
        "| data | attack | attackers | seed | epochs | " + " | ".join(settings) + " |",
        "|---|---|---:|---:|---:|" + "---|" * len(settings),
    ]
    for cell in cells:
        data, attack, fraction, seed, epochs = cell
        found = {
            r["scores"]: r
            for r in rows
            if (r["data"], r["attack"], r["seed"], r["epochs"]) == cell[:2] + cell[3:]
        }
        texts = [cell_text(found[name]) for name in settings]
        table.add_row(data, attack, f"{fraction:.0%}", str(seed), str(epochs), *texts)
        lines.append(
            f"| {data} | {attack} | {fraction:.0%} | {seed} | {epochs} | " + " | ".join(texts) + " |"
        )
    return table, lines


def main() -> None:
    """Run every cell in both settings, print the table, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "score-line")
    args = parser.parse_args()
    console = Console()
    rows = run_pairs(CELLS, SETTINGS, "scoring.from_line", console)
    table, lines = paired_report(
        "Scores measured from the suspect line", "bench/score_line.py", __doc__, CELLS, SETTINGS, rows
    )
    for name in SETTINGS:
        mine = [r for r in rows if r["scores"] == name]
        near = sum(r["honest_one_miss_from_suspension"] for r in mine)
        lines.append(f"\n{name}: {near} honest nodes near suspension over {len(mine)} runs.")
    accuracy_same = all(
        rows[i]["final_accuracy"] == rows[i + 1]["final_accuracy"] for i in range(0, len(rows), 2)
    )
    penalties = sum(r["honest_penalties"] + r["honest_suspended"] for r in rows)
    pairs = "identical in every pair" if accuracy_same else "differs in some pairs (reply order under load)"
    lines += [
        "",
        f"Scores change reputations only (selection is uniform by default): final accuracy {pairs}. "
        f"Honest penalties and suspensions over all {len(rows)} runs: {penalties}.",
    ]
    console.print(table)
    robustness.write_results(args.out, rows, lines, console)


if __name__ == "__main__":
    main()
