"""How long the coordinator's defences anchored in g0 take at a model size, and the process's peak memory:
judge_with_evidence + clip_influence + filter_backdoors (coordinator/anchored_steps.py) over 3 updates (the
third boosted 4x: clipped by the influence bound and by the filter), then bound_step (a step bound that
bites) and the backdoor filter's noise on the aggregate. Synthetic updates around a random g0; an MLP's
two weight matrices of half the parameters each.

Issue 28 moved these from whole float64 deltas per update to one Gram matrix per round (defence/gram.py).
Point it at another checkout to time that checkout's code (e.g. one before issue 28: it has no
round_gram, and its noise is the whole-vector formula):

Usage: .venv/bin/python bench/screening_split.py [--repo PATH] [--params 1e7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
parser.add_argument("--params", type=float, default=1e7)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()
sys.path.insert(0, args.repo)

import numpy as np  # noqa: E402
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402

try:  # where the steps live since they left screening.py
    from fl_chain.coordinator import anchored_steps as screening
except ImportError:  # a checkout from before
    from fl_chain.coordinator import screening
from fl_chain.defence import backdoor  # noqa: E402
from fl_chain.defence.evidence import EvidenceBook  # noqa: E402
from fl_chain.defence.influence import bound_step  # noqa: E402
from fl_chain.defence.vectors import flat_delta, previous_vector, unflatten  # noqa: E402
from fl_chain.wire.records import arrays_to_record  # noqa: E402
from tests.conftest import flower_server_identity  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def noise(model, previous, bound: float, seed: tuple[int, int]):
    if hasattr(backdoor, "noised"):
        return backdoor.noised(model, previous, bound, 0.001, seed)
    step = flat_delta(model, previous)  # the whole-vector formula TrainRounds._noised used before
    return unflatten(
        previous_vector(previous) + step + backdoor.noise_vector(step.size, bound, 0.001, seed), previous
    )


def screened(updates):
    """The round's accepted replies as screen_replies leaves them."""
    out, verified = screening.Screened(), {}
    for node, (who, arrays) in enumerate(updates.items(), start=1):
        outgoing = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type="train")
        content = {"arrays": arrays_to_record(arrays), "metrics": MetricRecord({"num-examples": 10})}
        out.accepted.append(Message(RecordDict(content), reply_to=outgoing))
        out.updates[who] = out.originals[who] = arrays
        out.weights[who], verified[node] = 10.0, who
    return out, verified


@contextmanager
def timed(times: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    times[name] = time.perf_counter() - started


def main() -> None:
    rng = np.random.default_rng(0)
    side = int((args.params / 2) ** 0.5)
    shapes = {"w1": (side, side), "b1": (side,), "w2": (side, side), "b2": (10,)}
    previous = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    g0 = {k: rng.normal(0, 1e-3, s).astype(np.float32) for k, s in shapes.items()}
    root = np.concatenate([v.ravel().astype(np.float64) for v in g0.values()])
    updates = {
        f"0x{i}": {
            k: (previous[k] + scale * (g0[k] + rng.normal(0, 1e-3, g0[k].shape))).astype(np.float32)
            for k in shapes
        }
        for i, scale in enumerate((1.0, 1.2, 4.0))
    }
    reference = float(np.linalg.norm(root)) * 1.5
    backdoor.hdbscan_labels(np.clip(1 - np.eye(4), 0, 2), 3)  # sklearn's import and first fit: not timed
    size = sum(v.size for v in previous.values())
    print(f"{args.repo}: {size / 1e6:.1f}M parameters, 3 updates; peak RSS after setup {peak_mb():.0f} MB")
    for rep in range(args.repeats):
        times: dict[str, float] = {}
        with flower_server_identity(9):
            out, verified = screened(updates)
            shared = {}
            if hasattr(screening, "round_gram"):  # issue 28: one Gram matrix for the three steps
                with timed(times, "gram"):
                    shared["gram"] = screening.round_gram(out, previous, root)
            with timed(times, "evidence"):
                book = EvidenceBook()
                screening.judge_with_evidence(out, verified, book, root, previous, reference, **shared)
            with timed(times, "clip"):
                screening.clip_influence(out, verified, reference, previous, 2.0, **shared)
            with timed(times, "filter"):
                bound = screening.filter_backdoors(out, verified, root, previous, clip=True, **shared)
        total = sum(times.values())
        model = {k: np.mean([u[k] for u in out.updates.values()], axis=0).astype(np.float32) for k in shapes}
        with timed(times, "step bound"):
            bound_step(model, previous, reference, 0.5)
        with timed(times, "noise"):
            noise(model, previous, bound, (0, rep))
        split = ", ".join(f"{k} {v:.2f}" for k, v in times.items())
        print(f"  repeat {rep}: evidence + clip + filter {total:.2f} s ({split} s)", end="")
        print(f"; clipped {sorted(out.clipped)}; peak RSS {peak_mb():.0f} MB", flush=True)


if __name__ == "__main__":
    main()
