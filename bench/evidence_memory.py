"""A longer evidence memory against attackers that stay under "2 of the last 3" (issue 25): in process
(no chain, no Flower), honest digits nodes and FedAvg as bench/late_calibration.py measures them; the
anchored evidence rules (flchain's moving suspect line) are replayed with each candidate memory on the
same rounds, counting honest nodes penalized, and when node 0 is caught if it sign-flips its update
every 3rd round from round 3 (periodic), from round 1 (always) or from half-time (turncoat).
Writes docs/evidence-memory.md and .json.
Usage: .venv/bin/python bench/evidence_memory.py [--rounds 30] [--nodes 10] [--epochs 1 3 5] [--seeds 0]
       (about 10 s per cell on 2 cores)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from late_calibration import cell_arguments, each_cell, measure  # noqa: E402

from fl_chain.defence.evidence import EvidenceBook, EvidencePolicy  # noqa: E402
from fl_chain.defence.gram import vector_gram  # noqa: E402

POLICY = EvidencePolicy()
MEMORIES = {
    "2 of 3 (flchain before)": EvidencePolicy(long_window=0, long_needed=0),
    "2 of 3, or 3 of 9": EvidencePolicy(long_window=9, long_needed=3),
    "2 of 3, or 4 of 12": EvidencePolicy(long_window=12, long_needed=4),
    "2 of 3, or 4 of 9": EvidencePolicy(long_window=9, long_needed=4),
    "2 of 3, or 2 of 6": EvidencePolicy(long_window=6, long_needed=2),
    "2 of 3, or 3 of 12 (flchain now)": EvidencePolicy(long_window=12, long_needed=3),
}
Flips = Callable[[int], bool]  # round -> does node 0 sign-flip in it


def replay(rounds: list[dict], policy: EvidencePolicy, flips: Flips | None = None) -> dict[str, int]:
    """Who is penalized (first round each) under `policy` with flchain's moving suspect line; node n0
    sign-flips its honest update in the rounds `flips` says."""
    book = EvidenceBook(policy)
    penalized: dict[str, int] = {}
    for r in rounds:
        deltas = dict(r["deltas"])
        if flips is not None and flips(r["round"]):
            deltas["n0"] = -deltas["n0"]
        line = POLICY.min_cosine - POLICY.agreement_slack * (1 - max(r["halves"], 0.0))
        _, now = book.observe(vector_gram(deltas, r["g0"]), None, directions=True, line=line)
        for who in now:
            penalized.setdefault(who, r["round"])
    return penalized


def cell(split: str, nodes: int, epochs: int, rounds: int, seed: int) -> dict:
    """One measured run and every memory's verdicts on it."""
    measured = measure(split, nodes, epochs, rounds, seed)
    late = rounds // 2
    attackers: dict[str, Flips] = {
        "periodic": lambda r: r % 3 == 0,
        "always": lambda r: True,
        "turncoat": lambda r: r >= late,
    }
    out = {"split": split, "nodes": nodes, "epochs": epochs, "seed": seed, "memories": {}}
    for name, policy in MEMORIES.items():
        honest = replay(measured, policy)
        caught = {a: replay(measured, policy, f).get("n0") for a, f in attackers.items()}
        out["memories"][name] = {"honest_penalized": len(honest), "caught": caught, "late": late}
    return out


def table(results: list[dict]) -> list[str]:
    """Per memory, summed over the cells: honest penalties, cells with any, and attackers caught."""
    lines = [
        "| memory | honest penalized | cells with any | periodic caught | always caught by round 5 "
        "| turncoat caught within 5 rounds | turncoat caught at all |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    n = len(results)
    for name in MEMORIES:
        m = [r["memories"][name] for r in results]
        pen = sum(x["honest_penalized"] for x in m)
        cells = sum(x["honest_penalized"] > 0 for x in m)
        periodic = sum(x["caught"]["periodic"] is not None for x in m)
        always = sum((x["caught"]["always"] or 99) <= 5 for x in m)
        turn5 = sum((x["caught"]["turncoat"] or 99) <= x["late"] + 5 for x in m)
        turn = sum(x["caught"]["turncoat"] is not None for x in m)
        lines.append(
            f"| {name} | {pen} | {cells}/{n} | {periodic}/{n} | {always}/{n} | {turn5}/{n} | {turn}/{n} |"
        )
    return lines


def main() -> None:
    """Measure the cells, print and write the table."""
    args = cell_arguments(__doc__.splitlines()[0])
    results = []
    for split, nodes, epochs, rounds, seed in each_cell(args):
        results.append(cell(split, nodes, epochs, rounds, seed))
        print(json.dumps(results[-1]), flush=True)
    lines = table(results)
    head = (
        f"# Evidence memory ({len(results)} cells: {', '.join(args.splits)} x {args.nodes} nodes x "
        f"{args.epochs} local epochs x seeds {args.seeds}, {args.rounds} rounds; bench/evidence_memory.py)"
    )
    (args.out / "evidence-memory.json").write_text(json.dumps(results, indent=1))
    (args.out / "evidence-memory.md").write_text(head + "\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
