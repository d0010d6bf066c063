"""Which size yardstick and which direction line penalize no honest node at 1-5 local epochs on any split,
and what each still catches (issue 25). In process (no chain, no Flower): honest digits nodes and FedAvg
as bench/late_calibration.py measures them (each node's update, its example count, g0, the root halves'
agreement); the anchored evidence rules (defence/evidence.py, 2 of the last 3 or 3 of the last 12) are
replayed on the same rounds under each candidate, counting honest nodes penalized, and the round each
attacker is first penalized when the median-sized node (by claim) turns into one:
  - sign-flip: sends its honest update negated, from round 1;
  - boost xK: sends K x its honest update and claims the largest count that still counts in full (the
    aggregation's cap, 2 x the round's median claim: the strongest lie about its size);
  - free-rider: sends the model it got back (a zero update).
Size yardsticks (|g0| is the root update's norm, n the root set's size):
  - median claim (before): |g0| x the round's median claim / n, for every node;
  - own claim, capped: |g0| x min(the node's claim, 2 x the median claim) / n.
Measured runs are cached in --cache (one pickle per cell), so new candidates replay in seconds.
Writes docs/evidence-calibration.md and .json; `make bench-attacks` runs it.
Usage: .venv/bin/python bench/evidence_calibration.py [--rounds 30] [--nodes 10] [--epochs 1 3 5]
       [--seeds 0 1 2] [--splits ...] [--cache /tmp/evidence-calibration]   (10-60 s per cell measured)
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from late_calibration import SPLITS, each_cell, measure  # noqa: E402

from fl_chain.defence.anchor import RootAnchor  # noqa: E402
from fl_chain.defence.evidence import EvidenceBook, EvidencePolicy  # noqa: E402
from fl_chain.defence.gram import vector_gram  # noqa: E402

POLICY = EvidencePolicy()
CAP = 2.0  # ScreeningPolicy.claim_cap: a claim counts at most this x the round's median claim
Reference = Callable[[dict, Mapping[str, float]], dict[str, float]]  # round, claims -> who -> yardstick


def _median_claim(r: dict, claims: Mapping[str, float]) -> dict[str, float]:
    size = float(np.linalg.norm(r["g0"])) * float(np.median(list(claims.values()))) / r["root_examples"]
    return dict.fromkeys(claims, size)


def _own_claim(r: dict, claims: Mapping[str, float]) -> dict[str, float]:
    g0, cap = float(np.linalg.norm(r["g0"])), CAP * float(np.median(list(claims.values())))
    return {w: g0 * min(c, cap) / r["root_examples"] for w, c in claims.items()}


def _sqrt_claim(r: dict, claims: Mapping[str, float]) -> dict[str, float]:
    """flchain's own rule, called rather than restated (the anchor's trainer is not used here)."""
    anchor = RootAnchor(lambda arrays, config: dict(arrays), root_examples=r["root_examples"])
    return anchor.size_references(r["g0"], claims, CAP) or {}


SIZES: dict[str, Reference] = {
    "median claim (before)": _median_claim,
    "own claim, capped": _own_claim,
    "median x sqrt(own / median), capped": _sqrt_claim,
}
# direction lines: a measured round -> the cosine with g0 below which an update is suspect
LINES: dict[str, Callable[[dict], float]] = {
    f"{line:g} - {slack:g} x (1 - halves)": (
        lambda r, line=line, slack=slack: line - slack * (1 - max(r["halves"], 0.0))
    )
    for line, slack in ((-0.05, 0.3), (-0.05, 0.5), (-0.1, 0.5), (-0.15, 0.3), (-0.2, 0.3))
}
RATIOS = (6.0, 8.0, 10.0)  # max_norm_ratio candidates
CHOSEN = ("median x sqrt(own / median), capped", "-0.2 - 0.3 x (1 - halves)", POLICY.max_norm_ratio)
ATTACKS = ("sign-flip", "boost x3", "boost x5", "boost x8", "free-rider")


def _attacked(r: dict, attack: str, who: str) -> tuple[dict, dict]:
    """(deltas, claims) of round `r` with node `who` running `attack`."""
    deltas, claims = dict(r["deltas"]), {w: float(n) for w, n in r["examples"].items()}
    if attack == "sign-flip":
        deltas[who] = -deltas[who]
    elif attack.startswith("boost"):
        deltas[who] = float(attack.split("x")[1]) * deltas[who]
        others = [c for w, c in claims.items() if w != who]
        # the largest claim still counted in full: the cap moves with the median this claim is part of
        claims[who] = max(claims[who], CAP * float(np.median(others)))
    elif attack == "free-rider":
        deltas[who] = np.zeros_like(deltas[who])
    return deltas, claims


def replay(
    rounds: list[dict],
    size: Reference,
    line: Callable[[dict], float],
    policy: EvidencePolicy,
    attack: str | None = None,
    who: str = "",
) -> dict[str, int]:
    """Who is penalized (first round each) under these rules; with `attack`, node `who` runs it."""
    book = EvidenceBook(policy)
    penalized: dict[str, int] = {}
    for r in rounds:
        if attack is None:
            deltas, claims = r["deltas"], {w: float(n) for w, n in r["examples"].items()}
        else:
            deltas, claims = _attacked(r, attack, who)
        _, now = book.observe(vector_gram(deltas, r["g0"]), size(r, claims), True, line(r))
        for w in now:
            penalized.setdefault(w, r["round"])
    return penalized


def measured(cell: tuple, cache: Path) -> list[dict]:
    """The measured rounds of one cell, from the cache when there."""
    path = cache / ("-".join(str(x) for x in cell).replace(" ", "_") + ".pickle")
    if path.exists():
        return pickle.loads(path.read_bytes())
    rounds = measure(*cell)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(rounds))
    return rounds


def ratios(rounds: list[dict], size: Reference) -> list[float]:
    """Every honest update's norm / its yardstick."""
    out = []
    for r in rounds:
        ref = size(r, {w: float(n) for w, n in r["examples"].items()})
        out += [float(np.linalg.norm(d)) / ref[w] for w, d in r["deltas"].items() if ref[w] > 0]
    return out


def cell_results(cell: tuple, rounds: list[dict]) -> dict:
    """Every candidate's verdicts on one measured cell."""
    split, nodes, epochs, _, seed = cell
    claims = rounds[0]["examples"]
    median_node = sorted(claims, key=lambda w: (claims[w], w))[len(claims) // 2]
    out: dict = {"split": split, "nodes": nodes, "epochs": epochs, "seed": seed}
    out["accuracy"] = rounds[-1]["accuracy"]
    out["honest_ratio"] = {
        name: {"min": min(v), "p99": float(np.percentile(v, 99)), "max": max(v)}
        for name, size in SIZES.items()
        for v in [ratios(rounds, size)]
    }
    out["rules"] = []
    for size_name, size in SIZES.items():
        for line_name, line in LINES.items():
            for ratio in RATIOS:
                policy = replace(POLICY, max_norm_ratio=ratio)
                honest = replay(rounds, size, line, policy)
                caught = {
                    a: replay(rounds, size, line, policy, a, median_node).get(median_node) for a in ATTACKS
                }
                out["rules"].append(
                    {
                        "size": size_name,
                        "line": line_name,
                        "max_ratio": ratio,
                        "honest_penalized": len(honest),
                        "first_honest_penalty": min(honest.values()) if honest else None,
                        "caught": caught,
                    }
                )
    return out


def report(results: list[dict], rounds: int) -> list[str]:
    """The markdown: honest size ratios per cell, then each candidate's totals over all cells."""
    lines = [
        "# Evidence calibration: size yardstick and direction line at 1-5 local epochs",
        "",
        f"Generated by `bench/evidence_calibration.py` ({len(results)} cells: 10 honest digits nodes, "
        f"FedAvg, {rounds} rounds, in process). A penalty needs 2 suspect updates in a node's last 3 or 3 in "
        "its last 12. Attackers: the median-sized node (by claim), from round 1; a boosting one also claims "
        "2 x the median. flchain's rules (RootAnchor.size_references, EvidencePolicy): "
        f"**{CHOSEN[0]}, {CHOSEN[1]}, max ratio {CHOSEN[2]:g}**.",
        "",
        "## Honest update sizes / yardstick",
        "",
        "| data | epochs | seed | acc | " + " | ".join(f"{n} min-max" for n in SIZES) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(SIZES),
    ]
    for r in results:
        spans = " | ".join(
            f"{r['honest_ratio'][n]['min']:.2f}-{r['honest_ratio'][n]['max']:.2f}" for n in SIZES
        )
        lines.append(
            f"| {r['split']} | {r['epochs']} | {r['seed']} | {100 * r['accuracy']:.1f} % | {spans} |"
        )
    lines += [
        "",
        "## Candidates over all cells",
        "",
        "Honest penalized: nodes over all cells (cells with any). Caught: cells where the attacker is "
        "penalized / all cells, and the latest first-penalty round among them.",
        "",
        "| size yardstick | direction line | max ratio | honest penalized | 1-epoch honest | "
        + " | ".join(ATTACKS)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(ATTACKS),
    ]
    keys = [(x["size"], x["line"], x["max_ratio"]) for x in results[0]["rules"]]
    for i, (size, line, ratio) in enumerate(keys):
        rows = [(r, r["rules"][i]) for r in results]
        honest = sum(x["honest_penalized"] for _, x in rows)
        cells = sum(x["honest_penalized"] > 0 for _, x in rows)
        one = sum(x["honest_penalized"] for r, x in rows if r["epochs"] == 1)
        caught = []
        for a in ATTACKS:
            when = [x["caught"][a] for _, x in rows if x["caught"][a] is not None]
            caught.append(f"{len(when)}/{len(rows)} by {max(when) if when else '-'}")
        mark = " **(flchain)**" if (size, line, ratio) == CHOSEN else ""
        lines.append(
            f"| {size}{mark} | {line} | {ratio:g} | {honest} ({cells} cells) | {one} | "
            + " | ".join(caught)
            + " |"
        )
    return lines


def main() -> None:
    """Measure (or load) the cells, replay every candidate, print and write the tables."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/evidence-calibration"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    results = []
    for cell in each_cell(args):
        rounds = measured(cell, args.cache)
        r = cell_results(cell, rounds)
        results.append(r)
        chosen = next(x for x in r["rules"] if (x["size"], x["line"], x["max_ratio"]) == CHOSEN)
        print(
            f"{cell[0]:8} e={cell[2]} s={cell[4]} acc {r['accuracy']:.3f}  flchain's rules: honest penalized "
            f"{chosen['honest_penalized']}, the attacker first penalized in round {chosen['caught']}",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evidence-calibration.json").write_text(json.dumps(results, indent=1))
    text = "\n".join(report(results, args.rounds)) + "\n"
    (args.out / "evidence-calibration.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
