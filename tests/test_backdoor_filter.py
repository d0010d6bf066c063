"""The backdoor filter (defence/backdoor.py, coordinator/anchored_steps.py: filter_backdoors) on constructed
cases with known answers, and the colluders' jitter (experiments/collusion.py) that defeats the copy rule."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from fl_chain.config import RunConfig, validate
from fl_chain.coordinator.anchored_steps import clip_to_median, filter_backdoors
from fl_chain.coordinator.policies import RoundPolicy, effective_policy
from fl_chain.coordinator.screening import Screened
from fl_chain.defence import gram
from fl_chain.defence.backdoor import (
    BackdoorPolicy,
    DirectionHistory,
    clip_factors,
    median_norm,
    noise_vector,
    noised,
    root_cluster,
)
from fl_chain.defence.evidence import copies
from fl_chain.defence.gram import vector_gram
from fl_chain.defence.vectors import flat_delta, previous_vector, unflatten
from fl_chain.errors import FlchainError
from fl_chain.experiments.collusion import colluding_deltas
from fl_chain.wire.records import arrays_to_record, record_to_arrays
from tests.conftest import flower_server_identity

ROOT = np.array([1.0, 0.0, 0.0, 0.0])


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """Messages built in this test carry a ServerApp identity, as Flower's runtime would give them."""
    with flower_server_identity(9):
        yield


def _round(honest: int, backdoor: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Honest updates near g0's direction, backdoor updates near another one, all a little different."""
    rng = np.random.default_rng(seed)
    other = np.array([0.2, 1.0, 0.0, 0.0])
    out = {f"h{i}": ROOT + rng.normal(0, 0.05, 4) for i in range(honest)}
    return out | {f"b{i}": other + rng.normal(0, 0.05, 4) for i in range(backdoor)}


def test_the_updates_in_the_root_updates_cluster_are_kept() -> None:
    deltas = _round(7, 3)
    assert root_cluster(vector_gram(deltas, ROOT)) == {f"h{i}" for i in range(7)}
    # g0 far from every update (noise to the clustering): the largest cluster is kept
    assert root_cluster(vector_gram(deltas, np.array([0.0, 0.0, 0.0, 1.0]))) == {f"h{i}" for i in range(7)}
    # too few updates to cluster: all kept
    assert root_cluster(vector_gram(_round(1, 1), ROOT)) == {"h0", "b0"}


def test_clipping_to_the_median_norm_and_seeded_noise() -> None:
    deltas = {w: np.array([n, 0.0]) for w, n in (("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 10.0))}
    assert median_norm(vector_gram(deltas)) == 2.5
    assert clip_factors(vector_gram(deltas), {"a", "c", "d"}, 2.5) == pytest.approx({"c": 2.5 / 3, "d": 0.25})
    a, b = noise_vector(20_000, 2.0, 0.01, (0, 3)), noise_vector(20_000, 2.0, 0.01, (0, 3))
    np.testing.assert_array_equal(a, b)  # the same run and round draw the same noise
    assert float(a.std()) == pytest.approx(0.02, rel=0.05)
    assert not np.array_equal(a, noise_vector(20_000, 2.0, 0.01, (0, 4)))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_noise_added_block_by_block_is_the_whole_vector_formula_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, dtype: type
) -> None:
    """`noised` draws noise_vector's values a block at a time (blocks of 7, ending mid-array) and gives
    the model the whole-vector formula gave: previous + step + noise in float64, cast back."""
    monkeypatch.setattr(gram, "BLOCK", 7)
    rng = np.random.default_rng(4)
    previous = {
        "w": np.asfortranarray(rng.normal(size=(6, 5)).astype(dtype)),
        "scalar": np.array(2, dtype),
        "empty": np.zeros((0, 3), dtype),
        "b": rng.normal(size=23).astype(dtype),
    }
    model = {k: (v + rng.normal(0, 0.1, v.shape)).astype(dtype) for k, v in previous.items()}
    step = flat_delta(model, previous)
    whole = unflatten(previous_vector(previous) + step + noise_vector(step.size, 2.0, 0.1, (0, 3)), previous)
    blocked = noised(model, previous, 2.0, 0.1, (0, 3))
    assert list(blocked) == list(whole)
    for name, value in whole.items():
        assert blocked[name].dtype == value.dtype and blocked[name].shape == value.shape
        assert blocked[name].tobytes() == value.tobytes(), name


def _screened(deltas: dict[str, np.ndarray]) -> tuple[Screened, dict[int, str]]:
    """A screened round of these deltas from a zero model (node ids 1, 2, ... in order), all accepted."""
    screened, verified = Screened(), {}
    for node, (who, delta) in enumerate(deltas.items(), start=1):
        arrays = {"w": delta.astype(np.float32)}
        outgoing = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type="train")
        record = RecordDict(
            {"arrays": arrays_to_record(arrays), "metrics": MetricRecord({"num-examples": 10})}
        )
        screened.accepted.append(Message(record, reply_to=outgoing))
        screened.updates[who], screened.weights[who], verified[node] = arrays, 10.0, who
    return screened, verified


def test_median_clip_shortens_only_the_updates_longer_than_the_median_and_nobody_is_accused() -> None:
    """clip_to_median: norms 1, 2, 3, 4, 20 -> median 3; the 4 and the 20 (an update inside every
    evidence threshold but long: the adaptive attacker's) come back at norm 3, in the replies the wrapped
    strategy aggregates too; the others are untouched; nobody is dropped or penalized."""
    previous = {"w": np.zeros(4, np.float32)}
    deltas = {f"n{i}": np.array([0.0, norm, 0.0, 0.0]) for i, norm in enumerate((1.0, 2.0, 3.0, 4.0))}
    deltas["long"] = np.array([12.0, 0.0, 16.0, 0.0])  # norm 20, another direction
    screened, verified = _screened(deltas)
    assert clip_to_median(screened, verified, previous, 1.0) == pytest.approx(3.0)
    assert screened.clipped == pytest.approx({"n3": 0.75, "long": 0.15})
    assert not screened.dropped and not screened.penalized and len(screened.accepted) == 5
    sent = {
        verified[r.metadata.src_node_id]: record_to_arrays(r.content.array_records["arrays"])["w"]
        for r in screened.accepted
    }
    np.testing.assert_allclose(sent["long"], [1.8, 0.0, 2.4, 0.0], rtol=1e-6)
    np.testing.assert_allclose(screened.updates["n3"]["w"], [0.0, 3.0, 0.0, 0.0], rtol=1e-6)
    for who in ("n0", "n1", "n2"):
        assert sent[who].tobytes() == deltas[who].astype(np.float32).tobytes()
    # twice the median: only the 20 is over 6
    screened, verified = _screened(deltas)
    assert clip_to_median(screened, verified, previous, 2.0) == pytest.approx(6.0)
    assert screened.clipped == pytest.approx({"long": 0.3})


def test_filter_leaves_the_backdoor_out_without_penalty_and_clips_what_it_keeps() -> None:
    previous = {"w": np.zeros(4, np.float32)}
    deltas = _round(7, 3)
    deltas["h0"] = deltas["h0"] * 3  # a long honest update: clipped, not excluded
    screened, verified = _screened(deltas)
    screened.clipped = {"h0": 0.5}  # an earlier clip (scoring.clip_ratio): the factors multiply
    bound = filter_backdoors(screened, verified, ROOT, previous)
    assert set(screened.dropped) == {"b0", "b1", "b2"} and not screened.penalized
    assert all("backdoor filter" in why for why in screened.dropped.values())
    assert set(screened.updates) == set(screened.weights) == {f"h{i}" for i in range(7)}
    assert len(screened.accepted) == 7
    factor = bound / float(np.linalg.norm(deltas["h0"]))
    assert screened.clipped["h0"] == pytest.approx(0.5 * factor, rel=1e-5)
    sent = record_to_arrays(screened.accepted[0].content.array_records["arrays"])["w"]
    assert float(np.linalg.norm(sent)) == pytest.approx(bound, rel=1e-5)


def _late_rounds(rounds: int, seed: int = 0) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Rounds late in a run, constructed: 7 honest updates that are mostly noise around a small share of
    g0's direction, 3 colluders sending one shared direction orthogonal to g0 (a backdoor's) with a little
    noise each, and g0 itself noisy. Yields (updates, g0) per round."""
    rng = np.random.default_rng(seed)
    dim = 64
    towards, shared = np.eye(dim)[0], np.eye(dim)[1]
    for _ in range(rounds):
        updates = {f"h{i}": 0.25 * towards + rng.normal(0, dim**-0.5, dim) for i in range(7)}
        updates |= {f"b{i}": shared + rng.normal(0, 0.6 * dim**-0.5, dim) for i in range(3)}
        yield updates, towards + rng.normal(0, dim**-0.5, dim)


def test_the_history_filter_keeps_colluders_out_where_one_round_cannot_tell() -> None:
    """Late in a run one round's clustering lets the colluders in (their few consistent updates are the
    densest core HDBSCAN finds), in 6 of these 12 rounds; clustering each node's summed unit updates with
    g0's keeps every honest node from the third round on and never a colluder."""
    previous = {"w": np.zeros(64, np.float32)}
    history = DirectionHistory()
    honest, colluders = {f"h{i}" for i in range(7)}, {"b0", "b1", "b2"}
    one_round_let_in = 0
    for rnd, (updates, root) in enumerate(_late_rounds(12)):
        one_round_let_in += colluders <= root_cluster(vector_gram(updates, root))
        arrays = {who: {"w": u.astype(np.float32)} for who, u in updates.items()}
        kept = root_cluster(history.add(arrays, previous, root))
        assert not kept & colluders, rnd
        if rnd >= 2:
            assert kept == honest, rnd
    assert one_round_let_in == 6
    assert set(history.nodes) == honest | colluders and history.root is not None


def test_filter_backdoors_with_a_history_drops_by_the_history_and_clips_by_the_round() -> None:
    """filter_backdoors with `history`: this round's updates join the history first, the nodes outside
    g0's history cluster are dropped (a reason that says so, no penalty), and what is kept is clipped to
    this round's median norm as without it."""
    previous = {"w": np.zeros(64, np.float32)}
    history = DirectionHistory()
    for updates, root in _late_rounds(3):
        screened, verified = _screened(updates)
        bound = filter_backdoors(screened, verified, root, previous, history=history)
    assert set(screened.dropped) == {"b0", "b1", "b2"} and not screened.penalized
    assert all("history cluster (backdoor filter)" in why for why in screened.dropped.values())
    assert set(screened.updates) == {f"h{i}" for i in range(7)} and len(screened.accepted) == 7
    norms = sorted(float(np.linalg.norm(u)) for u in updates.values())
    assert bound == pytest.approx((norms[4] + norms[5]) / 2, rel=1e-5)  # the median of all ten, as sent


def test_noise_is_refused_in_verified_rounds_and_bad_settings_are_one_line_errors() -> None:
    noisy = RoundPolicy(verified=True, backdoor=BackdoorPolicy(True, 0.01))
    with pytest.raises(FlchainError, match="noise cannot be re-derived"):
        effective_policy(noisy, "FedAvg", has_root=True)
    plain = effective_policy(replace(noisy, backdoor=BackdoorPolicy(True, 0.0)), "FedAvg", has_root=True)
    assert plain.backdoor.enabled
    config = RunConfig()
    config.scoring.backdoor_noise = -1.0
    with pytest.raises(FlchainError, match=r"scoring\.backdoor_noise"):
        validate(config, "flchain.toml")
    config = RunConfig()
    config.scoring.backdoor_history = True  # without the filter it clusters nothing
    with pytest.raises(FlchainError, match=r"scoring\.backdoor_history"):
        validate(config, "flchain.toml")
    config = RunConfig()
    config.scoring.evidence_long_needed = 13  # more than the 12 remembered
    with pytest.raises(FlchainError, match=r"scoring\.evidence_long_needed"):
        validate(config, "flchain.toml")


def test_jittered_colluders_send_no_copies() -> None:
    deltas = {i: np.random.default_rng(i).normal(0, 1, 50) for i in range(6)}
    same = colluding_deltas(deltas, {0: {"kind": "min-max", "perturbation": "std"}, 1: {"kind": "min-max"}})
    jittered = colluding_deltas(
        deltas, {i: {"kind": "min-max", "perturbation": "std", "jitter": 0.1, "seed": i} for i in (0, 1)}
    )
    assert copies(vector_gram({str(i): d for i, d in jittered.items()}), 0.9999) == {}
    np.testing.assert_allclose(np.linalg.norm(jittered[0]), np.linalg.norm(same[0]), rtol=0.2)
    both_std = colluding_deltas(deltas, {i: {"kind": "min-max", "perturbation": "std"} for i in (0, 1)})
    assert set(copies(vector_gram({str(i): d for i, d in both_std.items()}), 0.9999)) == {"0", "1"}
