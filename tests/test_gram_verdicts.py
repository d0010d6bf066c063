"""The defences anchored in g0 read from one Gram matrix per round (coordinator/anchored_steps.py: round_gram,
judge_with_evidence, clip_influence, filter_backdoors) reach the verdicts the whole-vector formulas reached
before (kept here as the reference, as they were): the same suspects, reasons, copies and penalties, the
same clip factors (to rounding), the same cluster, on random updates with a duplicate pair, a boosted, a
zero and a clipped update, over many blocks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from fl_chain.coordinator.anchored_steps import (
    clip_influence,
    filter_backdoors,
    judge_with_evidence,
    round_gram,
)
from fl_chain.coordinator.screening import Screened
from fl_chain.defence import gram
from fl_chain.defence.backdoor import hdbscan_labels
from fl_chain.defence.derivation import clip_update
from fl_chain.defence.evidence import EvidenceBook, EvidencePolicy
from fl_chain.defence.influence import bound_step
from fl_chain.defence.vectors import cosine, flat_delta
from fl_chain.wire.records import arrays_to_record
from tests.conftest import flower_server_identity

Arrays = dict[str, np.ndarray]


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    with flower_server_identity(9):
        yield


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 7 parameters: every array spans several, and blocks end mid-array."""
    monkeypatch.setattr(gram, "BLOCK", 7)


# ---- the whole-vector formulas, as defence/ computed them before issue 28 (the reference) ----
def _suspicions(deltas, root, policy, reference, directions, line):
    line = policy.min_cosine if line is None else line
    if reference is not None and reference < 0:
        reference = float(np.linalg.norm(root))
    suspect = {}
    for who, delta in deltas.items():
        norm = float(np.linalg.norm(delta))
        ratio = norm / reference if reference else 1.0
        cos = cosine(delta, root)
        if reference is None:
            if norm == 0:
                suspect[who] = "update is zero (returns the model it got)"
            elif directions and cos < line:
                suspect[who] = f"update points against the server's root update (cosine {cos:.2f})"
            continue
        if ratio < policy.min_norm_ratio:
            suspect[who] = f"update {ratio:.3f} x an honest update's expected size (returns the model it got)"
        elif ratio > policy.max_norm_ratio:
            suspect[who] = f"update {ratio:.1f} x an honest update's expected size (boosted)"
        elif directions and cos < line:
            suspect[who] = f"update points against the server's root update (cosine {cos:.2f})"
    names = [w for w in sorted(deltas) if np.linalg.norm(deltas[w]) > 0]
    copied = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if cosine(deltas[a], deltas[b]) >= policy.duplicate_cosine:
                copied.setdefault(a, f"update identical to {b}'s (collusion)")
                copied.setdefault(b, f"update identical to {a}'s (collusion)")
    return suspect, copied


def _unit(vector):
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else np.zeros_like(vector)


def _root_cluster(deltas, root):
    who = list(deltas)
    if len(who) < 3:
        return set(who)
    units = np.array([_unit(root)] + [_unit(np.asarray(deltas[w], np.float64)) for w in who])
    distances = np.clip(1.0 - units @ units.T, 0.0, 2.0)
    labels = hdbscan_labels(distances, len(who) // 2 + 1)
    if labels[0] >= 0:
        chosen = labels[0]
    elif (labels[1:] >= 0).any():
        nodes = labels[1:]
        chosen = int(np.bincount(nodes[nodes >= 0]).argmax())
    else:
        return set(who)
    inside = set(np.flatnonzero(labels == chosen).tolist())
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    return {w for j, w in enumerate(who, 1) if j in inside or (labels[j] < 0 and int(nearest[j]) in inside)}


def _whole_vector_round(updates, previous, root, reference, clip_ratio, policy):
    """(suspect, copies, clip factors, kept, bound): the round judged on whole float64 deltas."""
    deltas = {w: flat_delta(u, previous) for w, u in updates.items()}
    suspect, copied = _suspicions(deltas, root, policy, reference, True, None)
    current = {w: u for w, u in updates.items() if w not in suspect and w not in copied}
    clipped = {}
    for who, arrays in current.items():
        norm = float(np.linalg.norm(flat_delta(arrays, previous)))
        if norm > clip_ratio * reference:
            clipped[who] = clip_ratio * reference / norm
            current[who] = clip_update(previous, arrays, clipped[who])
    deltas = {w: flat_delta(u, previous) for w, u in current.items()}  # the clipped arrays, as they stand
    keep = _root_cluster(deltas, root)
    bound = float(np.median([np.linalg.norm(d) for d in deltas.values()]))
    for who in keep:
        norm = float(np.linalg.norm(deltas[who]))
        if norm > bound:
            clipped[who] = clipped.get(who, 1.0) * bound / norm
    return suspect, copied, clipped, keep, bound


# ---- the round ----
def _round(seed: int) -> tuple[Arrays, dict[str, Arrays], np.ndarray]:
    """Honest updates around g0, a second group around another direction (the backdoor filter's), a
    duplicate pair, a boosted update (suspect), a long one (clipped, not suspect) and a zero update."""
    rng = np.random.default_rng(seed)
    previous = {
        "w": np.asfortranarray(rng.normal(size=(6, 5)).astype(np.float32)),
        "scalar": np.array(0.5, np.float32),
        "b": rng.normal(size=23).astype(np.float32),
    }
    size = 6 * 5 + 1 + 23
    root = rng.normal(0, 0.1, size)
    other = 0.3 * root + rng.normal(0, 0.1, size)

    def update(delta: np.ndarray) -> Arrays:
        out, start = {}, 0
        for name, ref in previous.items():
            part = delta[start : start + ref.size].reshape(ref.shape)
            out[name] = (ref.astype(np.float64) + part).astype(np.float32)
            start += ref.size
        return out

    updates = {f"h{i}": update(root * rng.uniform(0.6, 1.4) + rng.normal(0, 0.04, size)) for i in range(6)}
    updates |= {f"o{i}": update(other + rng.normal(0, 0.02, size)) for i in range(3)}
    updates["long"] = update(3.5 * root + rng.normal(0, 0.04, size))  # 2 x reference < |.| < 6 x
    updates["boost"] = update(9.0 * root)
    updates["zero"] = {k: v.copy() for k, v in previous.items()}
    twin = update(root + rng.normal(0, 0.04, size))
    updates["copy-a"], updates["copy-b"] = twin, {k: v.copy() for k, v in twin.items()}
    return previous, updates, root


def _screened(updates: Mapping[str, Arrays]) -> tuple[Screened, dict[int, str]]:
    out, verified = Screened(), {}
    for node, (who, arrays) in enumerate(updates.items(), start=1):
        outgoing = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type="train")
        record = RecordDict(
            {"arrays": arrays_to_record(arrays), "metrics": MetricRecord({"num-examples": 10})}
        )
        out.accepted.append(Message(record, reply_to=outgoing))
        out.updates[who] = out.originals[who] = arrays
        out.weights[who] = 10.0
        verified[node] = who
    return out, verified


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("ratio", [2.0, 0.9])
def test_gram_verdicts_equal_the_whole_vector_verdicts(seed: int, shared: bool, ratio: float) -> None:
    """One Gram matrix shared by the three steps (as TrainRounds does) or one per step (their default):
    the verdicts of the whole-vector formulas. With a clip ratio of 0.9 most honest updates are clipped
    before the filter reads their norms (its median, its own clip)."""
    previous, updates, root = _round(seed)
    reference, policy = float(np.linalg.norm(root)), EvidencePolicy()
    suspect, copied, clipped, keep, bound = _whole_vector_round(
        updates, previous, root, reference, ratio, policy
    )
    assert set(suspect) == {"boost", "zero"} and set(copied) == {"copy-a", "copy-b"}  # the case's point
    assert "long" in clipped and keep and keep != set(updates) - set(suspect) - set(copied)

    out, verified = _screened(updates)
    book = EvidenceBook(policy)
    the_gram = round_gram(out, previous, root) if shared else None
    judge_with_evidence(out, verified, book, root, previous, reference, gram=the_gram)
    clip_influence(out, verified, reference, previous, ratio, gram=the_gram)
    got_bound = filter_backdoors(out, verified, root, previous, gram=the_gram)

    for who, why in suspect.items():
        assert out.dropped[who] == f"suspect: {why}"  # one suspect round: no penalty yet
    for who, why in copied.items():
        assert out.dropped[who].startswith(f"penalized: {why}")  # a copy: penalized at once
    assert out.penalized == set(copied)
    assert set(out.updates) == set(out.weights) == keep
    excluded = {w for w, why in out.dropped.items() if "backdoor filter" in why}
    assert excluded == set(updates) - set(suspect) - set(copied) - keep
    assert got_bound == pytest.approx(bound, rel=1e-6)
    assert out.clipped == pytest.approx(clipped, rel=1e-6)  # float32 rounding of the clipped arrays
    for who in keep:  # what is aggregated: the update as sent, clipped once by its whole factor
        expected = clip_update(previous, updates[who], out.clipped.get(who, 1.0))
        for name, value in expected.items():
            np.testing.assert_array_equal(out.updates[who][name], value)
    assert [verified[r.metadata.src_node_id] for r in out.accepted] == [w for w in updates if w in keep]


def test_the_step_bound_reads_the_steps_norm_block_by_block() -> None:
    previous, updates, _ = _round(0)
    model = updates["long"]
    norm = float(np.linalg.norm(flat_delta(model, previous)))
    shortened, factor = bound_step(model, previous, norm / 3, 1.5)
    assert factor == pytest.approx(0.5, rel=1e-12)
    for name, value in clip_update(previous, model, factor).items():
        np.testing.assert_array_equal(shortened[name], value)
    assert bound_step(model, previous, norm, 1.5)[1] == 1.0
