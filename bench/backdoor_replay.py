"""Backdoor defences compared in process (no chain, no Flower), the measurement the backdoor filter was
chosen by: 10 digits nodes, 3 of them backdoor attackers (BadNets, DBA, BadNets boost x3, BadNets +
Neurotoxin 10 %; half their data poisoned, target 0), FedAvg around each rule, 10 rounds, 3 local epochs.
Rules: none; FLTrust's trust-weighted aggregate (defence/trust.py); FLAME-style (the largest HDBSCAN
cluster of the updates by cosine distance, clipped to the median norm, no noise); flchain's filter
(defence/backdoor.py: g0's cluster, HDBSCAN's noise joining its nearest neighbour's cluster, clipped).
Per cell: final accuracy, attack success rate, honest and attacking updates left out.
Writes docs/backdoor-replay.md and .json (10 rounds, those four rules).
Also (--rules, --rounds 30 -> docs/backdoor-replay-30-rounds.md/.json): the filter with
scoring.backdoor_history (g0's cluster of the nodes' summed unit updates, defence/backdoor.py's
DirectionHistory) and Flower's coordinate-wise FedTrimmedAvg (beta 0.2, 0.3) and FedMedian.
Usage: .venv/bin/python bench/backdoor_replay.py [--splits IID "Dir 0.3" "Dir 0.1"] [--seed 0]
       [--rounds 30 --rules ...]   (about 1 s per cell and 10 rounds)
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fl_chain.defence.backdoor import (  # noqa: E402
    DirectionHistory,
    clip_factors,
    hdbscan_labels,
    median_norm,
    root_cluster,
)
from fl_chain.defence.gram import vector_gram  # noqa: E402
from fl_chain.defence.trust import trust_weighted_delta  # noqa: E402
from fl_chain.defence.vectors import flat_delta, previous_vector, unflatten  # noqa: E402
from fl_chain.experiments.backdoor import attack_success_rate, neurotoxin_mask, poison, trigger_pixels  # noqa: E402
from fl_chain.tasks.base import DataSpec  # noqa: E402
from fl_chain.tasks.digits import digits_task  # noqa: E402
from fl_chain.tasks.training import evaluate, get_arrays, set_arrays, train  # noqa: E402

LR, BATCH, EPOCHS, NODES, ATTACKERS, ROUNDS = 0.1, 32, 3, 10, 3, 10
SPLITS = {"IID": ("iid", 0.5), "Dir 0.3": ("dirichlet", 0.3), "Dir 0.1": ("dirichlet", 0.1)}
ATTACKS = ("none", "BadNets", "DBA", "BadNets boost x3", "BadNets + Neurotoxin")
Deltas = dict[int, np.ndarray]
Rule = Callable[[Deltas, dict[int, int], np.ndarray], tuple[set[int], np.ndarray]]


def _clipped_mean(deltas: Deltas, keep: set[int]) -> np.ndarray:
    gram = vector_gram({str(w): d for w, d in deltas.items()})
    factors = clip_factors(gram, {str(w) for w in keep}, median_norm(gram))
    return sum(deltas[w] * factors.get(str(w), 1.0) for w in keep) / len(keep)


def _none(deltas: Deltas, sizes: dict[int, int], root: np.ndarray) -> tuple[set[int], np.ndarray]:
    return set(deltas), sum(sizes[w] * d for w, d in deltas.items()) / sum(sizes.values())


def _fltrust(deltas: Deltas, sizes: dict[int, int], root: np.ndarray) -> tuple[set[int], np.ndarray]:
    step = trust_weighted_delta(deltas, root)
    kept = {w for w, d in deltas.items() if float(d @ root) > 0}
    return kept, np.zeros_like(root) if step is None else step


def _flame(deltas: Deltas, sizes: dict[int, int], root: np.ndarray) -> tuple[set[int], np.ndarray]:
    who = list(deltas)
    units = np.array([deltas[w] / np.linalg.norm(deltas[w]) for w in who])
    labels = hdbscan_labels(np.clip(1 - units @ units.T, 0, 2), len(who) // 2 + 1)
    keep = set(who)
    if (labels >= 0).any():
        largest = np.bincount(labels[labels >= 0]).argmax()
        keep = {w for w, label in zip(who, labels, strict=True) if label == largest}
    return keep, _clipped_mean(deltas, keep)


def _flchain(deltas: Deltas, sizes: dict[int, int], root: np.ndarray) -> tuple[set[int], np.ndarray]:
    keep = root_cluster(vector_gram({str(w): d for w, d in deltas.items()}, root))
    kept = {int(w) for w in keep}
    return kept, _clipped_mean(deltas, kept)


def _trimmed(beta: float) -> Rule:
    """Flower's FedTrimmedAvg (`trim_mean` per coordinate, `beta` cut from each end) over the updates:
    the same as over the models, each being previous + update."""
    from flwr.serverapp.strategy.fedtrimmedavg import trim_mean

    def rule(deltas: Deltas, sizes: dict[int, int], root: np.ndarray) -> tuple[set[int], np.ndarray]:
        return set(deltas), np.asarray(trim_mean(np.stack(list(deltas.values())), beta))

    return rule


def _median(deltas: Deltas, sizes: dict[int, int], root: np.ndarray) -> tuple[set[int], np.ndarray]:
    """Flower's FedMedian: the coordinate-wise median."""
    return set(deltas), np.median(np.stack(list(deltas.values())), axis=0)


def _flchain_history() -> Rule:
    """flchain's filter with scoring.backdoor_history: g0's cluster of the nodes' summed unit updates
    (defence/backdoor.py's DirectionHistory, the same code), clipped as the filter clips."""
    history = DirectionHistory()

    def rule(deltas: Deltas, sizes: dict[int, int], root: np.ndarray) -> tuple[set[int], np.ndarray]:
        arrays = {str(w): {"w": d} for w, d in deltas.items()}
        kept = {int(w) for w in root_cluster(history.add(arrays, {"w": np.zeros_like(root)}, root))}
        return kept, _clipped_mean(deltas, kept)

    return rule


# name -> a new rule for each run (the history rule keeps state across a run's rounds)
RULES: dict[str, Callable[[], Rule]] = {
    "none": lambda: _none,
    "FLTrust weighting": lambda: _fltrust,
    "FLAME-style (largest cluster)": lambda: _flame,
    "flchain filter (g0's cluster)": lambda: _flchain,
    "flchain filter, history": _flchain_history,
    "FedTrimmedAvg (beta 0.2)": lambda: _trimmed(0.2),
    "FedTrimmedAvg (beta 0.3)": lambda: _trimmed(0.3),
    "FedMedian": lambda: _median,
}


def run(attack: str, rule: Rule, split: str, seed: int, rounds: int = ROUNDS) -> dict:
    """One replayed run: accuracy, ASR and updates left out."""
    import torch

    torch.set_num_threads(1)
    task = digits_task()
    (xv, yv), (xt, yt) = task.server_data(seed)
    model = task.build_model(seed)
    current = get_arrays(model)
    part, alpha = SPLITS[split]
    data = [task.client_data(DataSpec(i, NODES, part, alpha, seed)) for i in range(NODES)]
    last, left_out = None, {"honest": 0, "attackers": 0}

    def trained(x: np.ndarray, y: np.ndarray, s: int) -> np.ndarray:
        set_arrays(model, current)
        train(model, x, y, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=s)
        return flat_delta(get_arrays(model), current)

    for rnd in range(1, rounds + 1):
        root = trained(xv, yv, rnd)
        deltas, sizes = {}, {}
        for i, (x, y) in enumerate(data):
            bad = attack != "none" and i < ATTACKERS
            if bad:
                pixels = trigger_pixels({"kind": "dba" if attack == "DBA" else "backdoor", "part": i})
                x, y = poison(x, y, pixels, 0, 0.5, seed=rnd)
            d = trained(x, y, rnd * 100 + i)
            if bad and "Neurotoxin" in attack and last is not None:
                d = d * neurotoxin_mask(last, 0.1)
            deltas[i], sizes[i] = 3 * d if bad and "boost" in attack else d, len(y)
        kept, last = rule(deltas, sizes, root)
        for i in set(deltas) - kept:
            left_out["attackers" if attack != "none" and i < ATTACKERS else "honest"] += 1
        current = unflatten(previous_vector(current) + last, current)
    set_arrays(model, current)

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy()

    return {"accuracy": evaluate(model, xt, yt)[1], "asr": attack_success_rate(predict, xt, yt, 0)} | left_out


def main() -> None:
    """Replay every (split, rule, attack), print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", nargs="+", default=list(RULES)[:4], choices=list(RULES))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    lines = [
        f"# Backdoor defences replayed in process (10 nodes, 3 attackers, {args.rounds} rounds, "
        f"seed {args.seed}; bench/backdoor_replay.py)",
        "",
        "accuracy / ASR / honest updates left out (of 100 clean, 70 attacked) per cell",
        "",
        "| data | rule | " + " | ".join(ATTACKS) + " |",
        "|---|---|" + "---|" * len(ATTACKS),
    ]
    results = []
    for split in args.splits:
        for name in args.rules:
            cells = []
            for attack in ATTACKS:
                r = run(attack, RULES[name](), split, args.seed, args.rounds)
                r |= {"split": split, "rule": name, "attack": attack}
                results.append(r)
                cells.append(f"{100 * r['accuracy']:.1f} / {100 * r['asr']:.1f} / {r['honest']}")
            lines.append(f"| {split} | {name} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    name = "backdoor-replay" if args.rounds == ROUNDS else f"backdoor-replay-{args.rounds}-rounds"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
