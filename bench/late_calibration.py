"""Honest updates in late rounds: where direction evidence stops being evidence, and which rule keeps it
valid. In process (no chain, no Flower): honest digits nodes, FedAvg, many rounds; every round records each
node's cos(update, g0), whether g0 still improves the server's held-out loss (RootAnchor.improves on the
task's test split), and the agreement of two root updates trained on disjoint halves of the root set; it
then replays the anchored evidence rules (defence/evidence.py) on those rounds under each candidate
rule for when and below which cosine a direction counts, and counts the honest nodes each would penalize.
Writes docs/late-calibration.md and .json.
Usage: .venv/bin/python bench/late_calibration.py [--rounds 30] [--nodes 5 10] [--epochs 1 3 5] [--seeds 0]
       [--splits IID "Dir 0.1"]   (about 10 s per cell on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fl_chain.defence.evidence import EvidenceBook, EvidencePolicy  # noqa: E402
from fl_chain.defence.gram import vector_gram  # noqa: E402
from fl_chain.defence.vectors import cosine, flat_delta, previous_vector, unflatten  # noqa: E402
from fl_chain.tasks.base import DataSpec  # noqa: E402
from fl_chain.tasks.digits import digits_task  # noqa: E402
from fl_chain.tasks.training import evaluate, get_arrays, set_arrays, train  # noqa: E402

LR, BATCH = 0.1, 32
SPLITS = {"IID": ("iid", 0.5), "Dir 1.0": ("dirichlet", 1.0), "Dir 0.3": ("dirichlet", 0.3)}
SPLITS |= {"Dir 0.1": ("dirichlet", 0.1), "shards": ("shards", 0.5)}
# rule: a measured round -> the cosine below which a direction is suspect, or None (no direction evidence)
POLICY = EvidencePolicy()
LINE, GAIN, SLACK = POLICY.min_cosine, POLICY.min_root_improvement, POLICY.agreement_slack
RULES: dict[str, Callable[[dict], float | None]] = {
    "always (before)": lambda r: LINE,
    "held-out only": lambda r: LINE if r["improvement"] > GAIN else None,
    "halves >= 0.3 only": lambda r: LINE if r["halves"] >= 0.3 else None,
    "held-out + halves >= 0.3": lambda r: LINE if r["improvement"] > GAIN and r["halves"] >= 0.3 else None,
    "line - 0.5 x (1 - halves)": lambda r: LINE - 0.5 * (1 - max(r["halves"], 0.0)),
    "line - 0.3 x (1 - halves) (flchain)": lambda r: LINE - SLACK * (1 - max(r["halves"], 0.0)),
}


def _trainer(model, x: np.ndarray, y: np.ndarray, epochs: int) -> Callable[[dict, int], dict]:
    def run(arrays: dict, seed: int) -> dict:
        set_arrays(model, arrays)
        train(model, x, y, epochs=epochs, lr=LR, batch_size=BATCH, seed=seed)
        return get_arrays(model)

    return run


def measure(split: str, nodes: int, epochs: int, rounds: int, seed: int) -> list[dict]:
    """Per round: honest nodes' cosines with g0, g0's relative improvement of the held-out (test) loss,
    the cosine between two root updates on disjoint halves of the root set, the model's test accuracy."""
    import torch

    torch.set_num_threads(1)
    task = digits_task()
    partitioning, alpha = SPLITS[split]
    (xv, yv), (xt, yt) = task.server_data(seed)
    model = task.build_model(seed)
    current = get_arrays(model)
    data = [task.client_data(DataSpec(i, nodes, partitioning, alpha, seed)) for i in range(nodes)]
    half = len(yv) // 2
    root = _trainer(model, xv, yv, epochs)
    halves = (_trainer(model, xv[:half], yv[:half], epochs), _trainer(model, xv[half:], yv[half:], epochs))

    def test_loss(arrays: dict) -> float:
        set_arrays(model, arrays)
        return evaluate(model, xt, yt)[0]

    out = []
    for rnd in range(1, rounds + 1):
        g0 = flat_delta(root(current, rnd), current)
        ga, gb = (flat_delta(h(current, rnd), current) for h in halves)
        before = test_loss(current)
        after = test_loss(unflatten(previous_vector(current) + g0, current))
        deltas = {}
        for i, (x, y) in enumerate(data):
            deltas[f"n{i}"] = (
                len(y),
                flat_delta(_trainer(model, x, y, epochs)(current, rnd * 100 + i), current),
            )
        mean = sum(n * d for n, d in deltas.values()) / sum(n for n, _ in deltas.values())
        current = unflatten(previous_vector(current) + mean, current)
        set_arrays(model, current)
        out.append(
            {
                "round": rnd,
                "cosines": {w: cosine(d, g0) for w, (_, d) in deltas.items()},
                "deltas": {w: d for w, (_, d) in deltas.items()},
                "examples": {w: n for w, (n, _) in deltas.items()},
                "root_examples": len(yv),
                "g0": g0,
                "improvement": (before - after) / before if before > 0 else 0.0,
                "halves": cosine(ga, gb),
                "accuracy": evaluate(model, xt, yt)[1],
            }
        )
    return out


def replay(rounds: list[dict], rule: Callable[[dict], float | None], attack_from: int = 0) -> dict:
    """The anchored evidence rules over the measured rounds with `rule` deciding when and below which
    cosine a direction counts: nodes penalized (first round each); with `attack_from` > 0 node n0 sends
    its honest update sign-flipped from that round on."""
    book = EvidenceBook(EvidencePolicy())
    penalized: dict[str, int] = {}
    for r in rounds:
        deltas = dict(r["deltas"])
        if attack_from and r["round"] >= attack_from:
            deltas["n0"] = -deltas["n0"]
        threshold = rule(r)
        book.policy = EvidencePolicy(min_cosine=threshold if threshold is not None else -0.05)
        _, now = book.observe(vector_gram(deltas, r["g0"]), None, directions=threshold is not None)
        for who in now:
            penalized.setdefault(who, r["round"])
    return penalized


def cell(split: str, nodes: int, epochs: int, rounds: int, seed: int) -> dict:
    """One measured run and every rule's verdicts on it."""
    measured = measure(split, nodes, epochs, rounds, seed)
    honest_rounds = nodes * rounds
    result = {
        "split": split,
        "nodes": nodes,
        "epochs": epochs,
        "seed": seed,
        "final_accuracy": measured[-1]["accuracy"],
        "per_round": [
            {
                "round": r["round"],
                "min_cosine": min(r["cosines"].values()),
                "median_cosine": float(np.median(list(r["cosines"].values()))),
                "below": sum(c < EvidencePolicy().min_cosine for c in r["cosines"].values()),
                "improvement": r["improvement"],
                "halves": r["halves"],
                "accuracy": r["accuracy"],
            }
            for r in measured
        ],
        "rules": {},
    }
    for name, rule in RULES.items():
        honest = replay(measured, rule)
        caught = replay(measured, rule, attack_from=1).get("n0")
        late = rounds // 2
        caught_late = replay(measured, rule, attack_from=late).get("n0")
        result["rules"][name] = {
            "honest_penalized": len(honest),
            "first_honest_penalty": min(honest.values()) if honest else None,
            "direction_rounds": sum(rule(r) is not None for r in measured),
            "honest_node_rounds": honest_rounds,
            "sign_flip_caught_round": caught,
            "late_sign_flip_from": late,
            "late_sign_flip_caught_round": caught_late,
        }
    return result


def report(results: list[dict], out: Path) -> list[str]:
    """The markdown tables (written next to the JSON)."""
    lines = [
        "# Late rounds: when is an update's direction evidence?",
        "",
        "Generated by `bench/late_calibration.py`: honest digits nodes, FedAvg, "
        f"{results[0]['per_round'][-1]['round']} rounds, in process. Each cell replays the anchored "
        "evidence rules (suspect below cosine -0.05 with g0; a penalty needs 2 suspect updates in a node's "
        "last 3) under each rule for when a direction counts. `sign-flip caught` replays the same rounds "
        "with node 0 sending its honest update sign-flipped from round 1, and from half-time: the round it "
        "is penalized (- never). flchain's rule (RootAnchor.direction_line): a direction is suspect below "
        f"{LINE:g} - {SLACK:g} x (1 - the cosine between the root updates of the root set's two halves).",
        "",
        "| data | nodes | epochs | seed | acc | rule | direction rounds | honest penalized | first penalty "
        "| sign-flip caught | turning at half-time caught |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name, v in r["rules"].items():
            lines.append(
                f"| {r['split']} | {r['nodes']} | {r['epochs']} | {r['seed']} | "
                f"{100 * r['final_accuracy']:.1f} % | {name} | {v['direction_rounds']} | "
                f"{v['honest_penalized']} | {v['first_honest_penalty'] or '-'} | "
                f"{v['sign_flip_caught_round'] or '-'} | {v['late_sign_flip_caught_round'] or '-'} |"
            )
    lines += [
        "",
        "Per round (first cell of each data split): honest cosines with g0 and the rules' signals.",
        "",
    ]
    lines += [
        "| data | epochs | round | min cosine | median cosine | below -0.05 | g0 held-out gain | halves cos |"
    ]
    lines += ["|---|---:|---:|---:|---:|---:|---:|---:|"]
    shown = set()
    for r in results:
        if r["split"] in shown:
            continue
        shown.add(r["split"])
        for p in r["per_round"]:
            lines.append(
                f"| {r['split']} | {r['epochs']} | {p['round']} | {p['min_cosine']:.2f} | "
                f"{p['median_cosine']:.2f} | {p['below']} | {100 * p['improvement']:.1f} % | "
                f"{p['halves']:.2f} |"
            )
    return lines


def cell_arguments(description: str) -> argparse.Namespace:
    """The command line of a bench over late_calibration's cells (rounds, nodes, epochs, seeds, splits,
    out)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--nodes", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    return parser.parse_args()


def each_cell(args: argparse.Namespace) -> list[tuple[str, int, int, int, int]]:
    """(split, nodes, epochs, rounds, seed) of every requested cell, in the order they run."""
    return [
        (split, nodes, epochs, args.rounds, seed)
        for split in args.splits
        for nodes in args.nodes
        for epochs in args.epochs
        for seed in args.seeds
    ]


def main() -> None:
    """Measure the requested cells, print and write the tables."""
    args = cell_arguments(__doc__.splitlines()[0])
    results = []
    for split, nodes, epochs, rounds, seed in each_cell(args):
        r = cell(split, nodes, epochs, rounds, seed)
        results.append(r)
        verdicts = "  ".join(
            f"{n}: pen {v['honest_penalized']} "
            f"flip@{v['sign_flip_caught_round']},{v['late_sign_flip_caught_round']}"
            for n, v in r["rules"].items()
        )
        print(
            f"{split:8} n={nodes} e={epochs} s={seed} acc {r['final_accuracy']:.3f}  {verdicts}",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "late-calibration.json").write_text(json.dumps(results, indent=1))
    (args.out / "late-calibration.md").write_text("\n".join(report(results, args.out)) + "\n")


if __name__ == "__main__":
    main()
