"""The backdoor filter (defence/backdoor.py) before and after, on real runs (anvil, Flower's Simulation
Engine, on-chain reputation): each attack x {anchored (default), anchored + backdoor filter}, 10 nodes,
digits, 3 local epochs, one seed. Per run: final accuracy, backdoor success rate, attackers suspended,
honest penalties and suspensions, and how many honest / attacking updates the filter left out, plus the
filter's cost per round (the coordinator's scoring-and-filter time). Writes docs/backdoor-filter.md/.json.
Usage: .venv/bin/python bench/backdoor_filter.py [--rounds 10] [--data IID] [--fraction 0.3]
       [--attacks BadNets DBA] [--defences "anchored (default)"]   (40-90 s per run on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from robustness import run_one  # noqa: E402

ATTACKS = ("none", "BadNets", "DBA", "BadNets boost x3", "BadNets + Neurotoxin")
DEFENCES = ("anchored (default)", "anchored + backdoor filter")


def row(r: dict) -> str:
    """One markdown table row of a run."""
    rounds = r["honest_node_rounds"] // (r["clients"] - r["attackers"])
    cells = [
        r["attack"],
        r["defence"],
        r["data"],
        str(r["seed"]),
        f"{100 * r['final_accuracy']:.1f} %",
        f"{100 * r['attack_success_rate']:.1f} %",
        f"{r['attackers_suspended']}/{r['attackers']}",
        str(r["honest_penalties"]),
        str(r["honest_suspended"]),
        f"{r['honest_excluded']}/{r['honest_node_rounds']}",
        f"{r['attackers_excluded']}/{r['attackers'] * rounds}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    """Run the pairs, print and write the table (results appended to the json, a rerun skips done runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data", nargs="+", default=["IID"])
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    parser.add_argument("--defences", nargs="+", default=list(DEFENCES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    path = args.out / "backdoor-filter.json"
    results = json.loads(path.read_text()) if path.exists() else []
    done = {(r["attack"], r["defence"], r["data"], r["fraction"], r["seed"]) for r in results}
    for data in args.data:
        for attack in args.attacks:
            fraction = 0.0 if attack == "none" else args.fraction
            for defence in args.defences:
                if (attack, defence, data, fraction, args.seed) in done:
                    continue
                result = run_one(defence, data, attack, fraction, args.rounds, seed=args.seed)
                results.append(result)
                path.write_text(json.dumps(results, indent=1))
                print(row(result), flush=True)
    header = "| attack | defence | data | seed | accuracy | ASR | attackers suspended | honest penalties | "
    header += "honest suspended | honest updates left out | attacking updates left out |"
    lines = [header, "|" + "---|" * 11, *(row(r) for r in results)]
    (args.out / "backdoor-filter.md").write_text(
        f"# The backdoor filter, before and after ({args.rounds} rounds, 10 nodes, digits; "
        "bench/backdoor_filter.py)\n\n" + "\n".join(lines) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
