"""Issue 25's grid: the attacks of the current literature and flchain-adaptive ones, and clean runs at long
horizons for the false-positive rate. Every cell is a real run (bench/robustness.py's run_one: a local
anvil chain, Flower's Simulation Engine, on-chain reputation), 10 nodes on digits, 30 rounds by default.

- clean: {1, 3, 5} local epochs x {IID, Dir 1.0, Dir 0.3, Dir 0.1, shards} x seeds, default defence;
- attacks: ATTACKS_25 (+ the earlier ALIE, IPM, sign-flip) x {anchored (default), anchored + trust, none}
  x {IID, Dir 0.3, Dir 0.1} x {10, 30, 50 %} attackers x seeds, and the honest-only reference at 30 and
  50 % (the honest nodes alone on the same partitions, undefended); plus one 50-node cell per attack
  family at 30 % (IID, default defence).

Per cell: final accuracy, backdoor attack success rate (ASR, the clean runs' rate is the floor), attackers
suspended and when, honest nodes penalized and suspended, the false-positive rate (honest penalties per
honest node-round) and whether every attacker ends below every honest node in reputation. Results are
appended to --out/robustness-attacks.json as they come (a stopped run resumes where it stopped, done
cells are skipped), and docs/robustness-attacks.md is rewritten from all of them.
Usage: .venv/bin/python bench/robustness_attacks.py [--part 1/6] [--only clean|attacks|scale] [--list]
       [--where fraction=0.3 --where data=IID ...]
       [--rounds 30] [--seeds 0 1 2]   (about 1-2 min per 30-round cell on 2 cores; the full grid is
       several hundred cells: split it with --part across sessions)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from robustness import ATTACKS_25, HONEST_ONLY, run_one  # noqa: E402

SPLITS = ("IID", "Dir 0.3", "Dir 0.1")
CLEAN_SPLITS = ("IID", "Dir 1.0", "Dir 0.3", "Dir 0.1", "shards")
# flchain's default, its FLTrust-style trust aggregation, its FLAME-style backdoor filter, undefended FedAvg
DEFENCES = ("anchored (default)", "anchored + trust", "anchored + backdoor filter", "none")
DEFENCES += ("anchored + backdoor filter (history)",)
FAMILIES = ("BadNets", "DBA", "Min-Max (std)", "Min-Sum (std)", "PoisonedFL", "adaptive (inside thresholds)")
Cell = tuple[str, str, str, float, int, int, int]  # defence, data, attack, fraction, seed, epochs, clients


def cells(only: str, seeds: list[int]) -> list[Cell]:
    """Every cell of the grid (or of one of its parts: clean, attacks, scale)."""
    out: list[Cell] = []
    if only in ("", "clean"):
        out += [
            ("anchored (default)", data, "none", 0.0, seed, epochs, 10)
            for data in CLEAN_SPLITS
            for epochs in (1, 3, 5)
            for seed in seeds
        ]
        out += [("none", data, "none", 0.0, seed, 3, 10) for data in CLEAN_SPLITS for seed in seeds]
        # what the opt-in backdoor filters cost a clean run (they leave honest updates out)
        out += [
            (defence, data, "none", 0.0, seed, 3, 10)
            for defence in ("anchored + backdoor filter", "anchored + backdoor filter (history)")
            for data in CLEAN_SPLITS
            for seed in seeds
        ]
    if only in ("", "attacks"):
        attacks = [*ATTACKS_25, "ALIE", "IPM", "sign-flip"]
        out += [
            (defence, data, attack, fraction, seed, 3, 10)
            for attack in attacks
            for defence in DEFENCES
            for data in SPLITS
            for fraction in (0.1, 0.3, 0.5)
            for seed in seeds
        ]
        # the honest nodes alone on the same partitions: what a majority's damage is measured against,
        # and at 30 % what the run can reach once its attackers are suspended (their data goes with them)
        out += [
            ("none", data, HONEST_ONLY, fraction, seed, 3, 10)
            for fraction in (0.3, 0.5)
            for data in SPLITS
            for seed in seeds
        ]
    if only in ("", "scale"):
        # and the clean undefended run at 50 nodes, each 50-node cell's accuracy reference
        out += [("none", "IID", "none", 0.0, seeds[0], 3, 50)]
        out += [("anchored (default)", "IID", a, 0.3, seeds[0], 3, 50) for a in FAMILIES]
    return out


FIELDS = ("defence", "data", "attack", "fraction", "seed", "epochs", "clients")


def matches(cell: Cell, where: list[str]) -> bool:
    """Whether a cell has every FIELD=VALUE of `where` (e.g. fraction=0.3, data=IID)."""
    for condition in where:
        name, _, value = condition.partition("=")
        if name not in FIELDS:
            raise SystemExit(f"--where {condition!r}: field must be one of {', '.join(FIELDS)}")
        if str(cell[FIELDS.index(name)]) != value:
            return False
    return True


def summary(results: list[dict]) -> list[str]:
    """One row per (defence, data, attack, attackers, nodes): the means over seeds and epochs, the honest
    penalties over honest node-rounds, the clean runs' undefended accuracy for comparison and, where it
    ran, the honest-only reference (the honest nodes alone on the same partitions, HONEST_ONLY)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["defence"], r["data"], r["attack"], r["fraction"], r["clients"]), []).append(r)
    # the undefended clean run of the same data, seed, local epochs and nodes: the reference of each run
    undefended = {
        (r["data"], r["seed"], r["epochs"], r["clients"]): r["final_accuracy"]
        for r in results
        if r["defence"] == "none" and r["attack"] == "none"
    }
    honest_only = {
        (r["data"], r["seed"], r["epochs"], r["fraction"], r["clients"]): r["final_accuracy"]
        for r in results
        if r["attack"] == HONEST_ONLY
    }
    lines = [
        "| defence | data | attack | attackers | nodes | runs | accuracy (mean) | vs undefended clean (runs) "
        "| vs honest only (runs) | ASR (max) "
        "| attackers suspended | honest penalties / honest node-rounds | honest suspended "
        "| honest one miss from suspension | attackers ranked below |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (defence, data, attack, fraction, clients), rs in sorted(groups.items()):
        reference = attack == HONEST_ONLY
        accuracy = sum(r["final_accuracy"] for r in rs) / len(rs)
        gaps = [
            r["final_accuracy"] - undefended[where]
            for r in rs
            if (where := (r["data"], r["seed"], r["epochs"], r["clients"])) in undefended
        ]
        gap = f"{100 * sum(gaps) / len(gaps):+.1f} pts ({len(gaps)})" if gaps else "-"
        alone = [
            r["final_accuracy"] - honest_only[key]
            for r in rs
            if not reference
            and (key := (r["data"], r["seed"], r["epochs"], r["fraction"], r["clients"])) in honest_only
        ]
        alone_gap = f"{100 * sum(alone) / len(alone):+.1f} pts ({len(alone)})" if alone else "-"
        ranked = sum(bool(r["attackers_rank_below_honest"]) for r in rs)
        lines.append(
            f"| {defence} | {data} | {attack} | {100 * fraction:.0f} % | {clients} | {len(rs)} | "
            f"{100 * accuracy:.1f} % | {gap} | {alone_gap} | "
            f"{100 * max(r['attack_success_rate'] for r in rs):.1f} % | "
            f"{sum(r['attackers_suspended'] for r in rs)}/{sum(r['attackers'] for r in rs)} | "
            f"{sum(r['honest_penalties'] for r in rs)}/{sum(r['honest_node_rounds'] for r in rs)} | "
            f"{sum(r['honest_suspended'] for r in rs)} | {near_suspension(rs)} | "
            f"{f'{ranked}/{len(rs)}' if fraction and not reference else '-'} |"
        )
    return lines


def near_suspension(runs: list[dict]) -> str:
    """Honest nodes that ended one missed round from suspension, summed over `runs` ("-" when a run
    predates the measure). Undefended runs suspend nobody (threshold 0): 0."""
    counts = [r.get("honest_one_miss_from_suspension", 0 if r["defence"] == "none" else None) for r in runs]
    return "-" if None in counts else str(sum(counts))


def side_by_side(results: list[dict]) -> list[str]:
    """The defences compared on the same attacks: one table per (data, attackers, seed, epochs) slice that
    more than one defence ran, a row per attack, a column per defence: accuracy, the backdoor success
    rate where it matters, and attackers suspended."""
    slices: dict[tuple, dict[str, dict[str, dict]]] = {}
    for r in results:
        if r["attack"] != "none":
            where = (r["data"], r["fraction"], r["seed"], r["epochs"], r["clients"])
            slices.setdefault(where, {}).setdefault(r["attack"], {})[r["defence"]] = r
    lines: list[str] = []
    for (data, fraction, seed, epochs, clients), attacks in sorted(slices.items()):
        defences = [d for d in DEFENCES if any(d in runs for runs in attacks.values())]
        if len(defences) < 2:
            continue
        clean = [
            r["final_accuracy"]
            for r in results
            if (r["defence"], r["attack"], r["data"], r["seed"], r["epochs"], r["clients"])
            == ("none", "none", data, seed, epochs, clients)
        ]
        reference = f"; the clean undefended run of this seed: {100 * clean[0]:.1f} %" if clean else ""
        lines += [
            f"### {data}, {100 * fraction:.0f} % attackers, {clients} nodes, seed {seed}, "
            f"{epochs} local epochs",
            "",
            f"Accuracy, backdoor success rate (ASR, backdoors only), attackers suspended{reference}.",
            "",
            "| attack | " + " | ".join(defences) + " |",
            "|---|" + "---|" * len(defences),
        ]
        for attack, runs in sorted(attacks.items()):
            cells = []
            for d in defences:
                r = runs.get(d)
                if r is None:
                    cells.append("-")
                    continue
                asr = (
                    f", ASR {100 * r['attack_success_rate']:.0f} %" if r["attack_success_rate"] > 0.05 else ""
                )
                cells.append(
                    f"{100 * r['final_accuracy']:.1f} %{asr}, {r['attackers_suspended']}/{r['attackers']}"
                )
            lines.append(f"| {attack} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def key(cell: Cell) -> str:
    """A cell's identity in the results file."""
    return json.dumps(list(cell))


def write_markdown(results: list[dict], out: Path, rounds: int) -> None:
    """docs/robustness-attacks.md: one row per cell, the false-positive figures per cell and overall."""
    honest_rounds = sum(r["honest_node_rounds"] for r in results)
    penalties = sum(r["honest_penalties"] for r in results)
    lines = [
        "# Attacks of the literature, long runs and the false-positive rate",
        "",
        f"Generated by `bench/robustness_attacks.py`: {len(results)} runs, digits, {rounds} rounds. "
        f"Over all of them: {penalties} honest penalties in {honest_rounds} honest node-rounds "
        f"(false-positive rate {100 * penalties / max(1, honest_rounds):.3f} %), "
        f"{sum(r['honest_suspended'] for r in results)} honest suspensions; "
        f"{near_suspension(results)} honest nodes ended one missed round from suspension (their "
        "reputation x 0.9 below the threshold: a network blip would suspend them).",
        "",
        "## Summary",
        "",
        *summary(results),
        "",
        "## The defences side by side",
        "",
        *side_by_side(results),
        "## Every run",
        "",
        "| defence | data | attack | attackers | nodes | epochs | seed | accuracy | ASR "
        "| attackers suspended | all by round | honest penalties (rate) | first | honest suspended "
        "| honest one miss from suspension | attackers ranked below |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['defence']} | {r['data']} | {r['attack']} | {100 * r['fraction']:.0f} % | "
            f"{r['clients']} | {r['epochs']} | {r['seed']} | {100 * r['final_accuracy']:.1f} % | "
            f"{100 * r['attack_success_rate']:.1f} % | {r['attackers_suspended']}/{r['attackers']} | "
            f"{r['rounds_until_all_suspended'] or '-'} | {r['honest_penalties']} "
            f"({100 * r['false_positive_rate']:.2f} %) | {r['first_honest_penalty'] or '-'} | "
            f"{r['honest_suspended']} | {near_suspension([r])} | {r['attackers_rank_below_honest']} |"
        )
    (out / "robustness-attacks.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    """Run the selected cells not yet in the results file; rewrite the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=("", "clean", "attacks", "scale"), default="")
    parser.add_argument("--part", default="1/1", help="k/n: run every n-th cell starting at the k-th")
    parser.add_argument(
        "--where", action="append", default=[], metavar="FIELD=VALUE", help="only cells with this value"
    )
    parser.add_argument("--list", action="store_true", help="print the cells and their count, run nothing")
    parser.add_argument("--report", action="store_true", help="only rewrite OUT/robustness-attacks.md")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    k, n = (int(v) for v in args.part.split("/"))
    todo = [c for c in cells(args.only, args.seeds) if matches(c, args.where)][k - 1 :: n]
    if args.list:
        print("\n".join(key(c) for c in todo) + f"\n{len(todo)} cells")
        return
    logging.getLogger("flwr").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    path = args.out / "robustness-attacks.json"
    results = json.loads(path.read_text()) if path.exists() else []
    done = {r["cell"] for r in results}
    for i, cell in enumerate([] if args.report else todo, 1):
        if key(cell) in done:
            continue
        started = time.monotonic()
        defence, data, attack, fraction, seed, epochs, clients = cell
        try:
            r = run_one(defence, data, attack, fraction, args.rounds, seed, epochs, clients)
        except Exception as exc:  # one failed cell is reported and retried next time; the others still run
            print(f"[{i}/{len(todo)}] {key(cell)} FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        r |= {"cell": key(cell)}
        results.append(r)
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))
        print(
            f"[{i}/{len(todo)}] {key(cell)} acc {100 * r['final_accuracy']:.1f} % "
            f"ASR {100 * r['attack_success_rate']:.1f} % susp {r['attackers_suspended']}/{r['attackers']} "
            f"honest pen {r['honest_penalties']} susp {r['honest_suspended']} "
            f"({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    write_markdown(results, args.out, args.rounds)


if __name__ == "__main__":
    main()
