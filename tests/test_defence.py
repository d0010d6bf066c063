"""The anchored defence on constructed cases with known answers: FLTrust's trust and aggregate, the
evidence book (no penalty for one bad round, at once for copies), the trust-weighted wrapper around
Flower's FedAvg, and the experiment attacks (on-off, Sybils, ALIE, IPM)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from fl_chain.coordinator.anchored_steps import clip_influence
from fl_chain.coordinator.screening import Screened
from fl_chain.coordinator.trust_strategy import TrustWeighted
from fl_chain.defence.anchor import RootAnchor
from fl_chain.defence.evidence import EvidenceBook, EvidencePolicy, suspicions
from fl_chain.defence.gram import vector_gram
from fl_chain.defence.influence import bound_influence, bound_step
from fl_chain.defence.trust import trust_scores, trust_weighted_delta
from fl_chain.defence.vectors import coordinate_median, flat_delta
from fl_chain.experiments.attacks import apply_attack
from fl_chain.experiments.collusion import alie_z, colluding_deltas
from fl_chain.wire.records import arrays_to_record, record_to_arrays
from tests.conftest import flower_server_identity
from tests.test_strategy import FakeGrid

ROOT = np.array([2.0, 0.0])


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """Messages built in this test carry a ServerApp identity, as Flower's runtime would give them."""
    with flower_server_identity(9):
        yield


def test_fltrust_trust_and_aggregate_known_answer() -> None:
    deltas = {"a": np.array([1.0, 1.0]), "b": np.array([3.0, 0.0]), "flip": np.array([-1.0, 0.0])}
    trust = trust_scores(deltas, ROOT)
    assert trust == pytest.approx({"a": 2**-0.5, "b": 1.0, "flip": 0.0})
    # Each update rescaled to |g0| = 2, weighted by trust: the sign-flipped one has no say.
    expected = (2**-0.5 * np.array([2**0.5, 2**0.5]) + 1.0 * np.array([2.0, 0.0])) / (1 + 2**-0.5)
    np.testing.assert_allclose(trust_weighted_delta(deltas, ROOT), expected)
    assert trust_weighted_delta({"flip": np.array([-1.0, 0.0])}, ROOT) is None


def test_evidence_needs_two_suspect_rounds_and_copies_are_penalized_at_once() -> None:
    book = EvidenceBook(EvidencePolicy(window=3, needed=2))
    honest, flip = np.array([1.0, 0.2]), np.array([-1.0, 0.1])
    rounds = [
        {"honest": honest, "flip": flip, "odd": np.array([-0.5, 1.0])},  # odd: one bad round only
        {"honest": honest, "flip": flip, "odd": np.array([0.8, -0.3])},
        {"honest": honest, "flip": flip, "odd": np.array([0.9, 0.5])},
    ]
    penalties = [book.observe(vector_gram(r, ROOT))[1] for r in rounds]
    assert [sorted(p) for p in penalties] == [[], ["flip"], ["flip"]]
    assert "2 of its last 2 updates suspect" in penalties[1]["flip"]
    suspect, copied = suspicions(
        vector_gram(
            {"s1": np.array([0.3, 0.9]), "s2": np.array([0.3, 0.9]), "lazy": np.zeros(2), "big": ROOT * 7},
            ROOT,
        ),
        EvidencePolicy(),
    )
    assert set(copied) == {"s1", "s2"} and "collusion" in copied["s1"]
    assert "returns the model it got" in suspect["lazy"] and "boosted" in suspect["big"]
    assert EvidenceBook().observe(
        vector_gram({"s1": np.array([0.3, 0.9]), "s2": np.array([0.3, 0.9])}, ROOT)
    )[1].keys() == {
        "s1",
        "s2",
    }


def test_a_longer_memory_catches_a_node_suspect_every_third_round() -> None:
    flip, good = np.array([-1.0, 0.0]), np.array([1.0, 0.1])
    rounds = [{"p": flip if r % 3 == 0 else good, "h": np.array([1.0, -0.2 * r])} for r in range(1, 10)]
    short = EvidenceBook(EvidencePolicy(long_window=0, long_needed=0))
    books = {6: EvidenceBook(EvidencePolicy(long_window=6, long_needed=2)), 12: EvidenceBook()}
    first: dict[int, dict[str, int]] = {6: {}, 12: {}}
    for r, deltas in enumerate(rounds, start=1):
        assert short.observe(vector_gram(deltas, ROOT), None)[1] == {}  # 1 of every 3: never 2 of the last 3
        for window, book in books.items():
            for who, why in book.observe(vector_gram(deltas, ROOT), None)[1].items():
                first[window].setdefault(who, r)
                assert f"of its last {min(r, window)} updates suspect" in why
    # 2 of 6: its second suspect update; the default, 3 of 12: its third; the honest node never
    assert first == {6: {"p": 6}, 12: {"p": 9}}


def test_trust_weighted_wrapper_around_fedavg_ignores_claims() -> None:
    previous = {"w": np.zeros(2, np.float32)}
    updates = {
        1: (np.array([1.0, 1.0]), 10),
        2: (np.array([3.0, 0.0]), 10),
        3: (np.array([-1.0, 0.0]), 10**9),
    }
    anchor = RootAnchor(lambda arrays, config: {"w": (arrays["w"] + ROOT).astype(np.float32)})
    strategy = TrustWeighted(FedAvg(fraction_evaluate=0.0), anchor)
    outgoing = {
        n: Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="train")
        for n in updates
    }
    grid = FakeGrid(dict.fromkeys(updates, lambda message: None))
    strategy.configure_train(1, arrays_to_record(previous), ConfigRecord({"lr": 0.1}), grid)
    replies = [
        Message(
            RecordDict(
                {
                    "arrays": arrays_to_record({"w": d.astype(np.float32)}),
                    "metrics": MetricRecord({"num-examples": n}),
                }
            ),
            reply_to=outgoing[node],
        )
        for node, (d, n) in updates.items()
    ]
    record, _ = strategy.aggregate_train(1, replies)
    expected = trust_weighted_delta({k: d for k, (d, _) in updates.items()}, ROOT)
    np.testing.assert_allclose(record_to_arrays(record)["w"], expected, rtol=1e-6)


def test_step_bound_shortens_only_steps_longer_than_the_root_update() -> None:
    previous = {"w": np.ones(2, np.float32), "b": np.zeros(1, np.float32)}
    root = np.array([3.0, 0.0, 4.0])  # ||g0|| = 5
    long_step = {"w": np.array([7.0, 1.0], np.float32), "b": np.array([8.0], np.float32)}  # delta (6,0,8)
    shortened, factor = bound_step(long_step, previous, float(np.linalg.norm(root)), 1.0)
    assert factor == pytest.approx(0.5)
    np.testing.assert_allclose(shortened["w"], [4.0, 1.0])
    np.testing.assert_allclose(shortened["b"], [4.0])
    assert shortened["w"].dtype == np.float32
    short_step = {"w": np.array([2.0, 1.0], np.float32), "b": np.array([1.0], np.float32)}
    untouched, factor = bound_step(short_step, previous, float(np.linalg.norm(root)), 1.0)
    assert factor == 1.0
    np.testing.assert_array_equal(untouched["w"], short_step["w"])


def test_per_update_clip_bounds_a_boosted_reply_and_rewrites_what_the_strategy_aggregates() -> None:
    previous = {"w": np.zeros(2, np.float32)}
    root = np.array([1.0, 0.0])
    replies = {1: np.array([0.5, 0.0]), 2: np.array([4.0, 3.0])}  # node 2 boosted to 5 x ||g0||
    screened = Screened()
    for node, delta in replies.items():
        arrays = {"w": delta.astype(np.float32)}
        outgoing = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type="train")
        screened.accepted.append(
            Message(
                RecordDict(
                    {"arrays": arrays_to_record(arrays), "metrics": MetricRecord({"num-examples": 10})}
                ),
                reply_to=outgoing,
            )
        )
        screened.updates[f"0x{node}"] = arrays
    verified = {m.metadata.src_node_id: f"0x{m.metadata.src_node_id}" for m in screened.accepted}
    bounded = bound_influence(screened.updates, previous, float(np.linalg.norm(root)), 2.0)
    assert list(bounded) == ["0x2"] and bounded["0x2"][1] == pytest.approx(0.4)
    np.testing.assert_allclose(bounded["0x2"][0]["w"], [1.6, 1.2], rtol=1e-6)
    clipped = clip_influence(screened, verified, float(np.linalg.norm(root)), previous, 2.0)
    assert clipped == screened.clipped == {"0x2": pytest.approx(0.4)}
    sent = record_to_arrays(screened.accepted[1].content.array_records["arrays"])["w"]
    np.testing.assert_allclose(sent, [1.6, 1.2], rtol=1e-6)
    np.testing.assert_allclose(screened.updates["0x1"]["w"], [0.5, 0.0])


def test_on_off_and_sybil_attacks() -> None:
    received = {"w": np.zeros(4, np.float32)}
    trained = {"w": np.ones(4, np.float32)}
    on_off = {"kind": "on-off", "after": 2, "then": {"kind": "sign-flip"}}
    np.testing.assert_array_equal(apply_attack(on_off, received, trained, 2)["w"], trained["w"])
    np.testing.assert_array_equal(apply_attack(on_off, received, trained, 3)["w"], -trained["w"])
    sybil = {"kind": "sybil", "std": 0.5, "seed": 7}
    a = apply_attack(sybil, received, trained, 4)["w"]
    b = apply_attack(sybil, received, {"w": np.full(4, 2, np.float32)}, 4)["w"]
    np.testing.assert_array_equal(a, b)  # identical whatever each Sybil trained
    assert not np.array_equal(a, apply_attack(sybil, received, trained, 5)["w"])  # new noise each round


def test_alie_and_ipm_known_answers() -> None:
    assert alie_z(10, 3) == pytest.approx(0.5244, abs=1e-3)  # s = 3, Phi^-1(0.7)
    deltas = {
        0: np.array([1.0, 2.0]),
        1: np.array([3.0, 2.0]),
        2: np.array([2.0, 5.0]),
        3: np.array([2.0, 3.0]),
    }
    sent = colluding_deltas(deltas, {2: {"kind": "alie", "z": 1.0}, 3: {"kind": "ipm", "epsilon": 0.5}})
    mean, std = np.array([2.0, 3.0]), np.array([np.sqrt(0.5), np.sqrt(1.5)])
    np.testing.assert_allclose(sent[2], mean - std)
    np.testing.assert_allclose(sent[3], -0.5 * mean)


def test_sizes_are_judged_against_g0_scaled_to_a_median_nodes_examples_or_not_at_all() -> None:
    anchor = RootAnchor(
        lambda arrays, config: {"w": (arrays["w"] + ROOT).astype(np.float32)}, root_examples=100
    )
    # |g0| = 2 from 100 root examples; a median node trained on 300: an honest update of ~6 is expected.
    assert anchor.size_reference(ROOT, 300.0) == pytest.approx(6.0)
    assert RootAnchor(anchor.train_on_root).size_reference(ROOT, 300.0) is None  # root set size unknown
    deltas = {"big": 50 * ROOT, "zero": np.zeros(2), "against": -ROOT, "honest": 3 * ROOT}
    suspect, _ = suspicions(vector_gram(deltas, ROOT), EvidencePolicy(), reference=6.0)
    assert sorted(suspect) == ["against", "big", "zero"]  # honest: 6 / 6 = 1x the reference
    suspect, _ = suspicions(
        vector_gram(deltas, ROOT), EvidencePolicy(), reference=None
    )  # directions and zero only
    assert sorted(suspect) == ["against", "zero"]


def test_directions_are_evidence_only_while_g0_improves_the_held_out_loss() -> None:
    """Known answers for RootAnchor.improves (a quadratic held-out loss around a target) and for
    suspicions with directions off: a node pointing against g0 is suspect only in rounds where g0 helps."""
    target = {"w": np.array([1.0, 1.0])}

    def held_out(arrays) -> float:
        return float(np.sum((np.asarray(arrays["w"], np.float64) - target["w"]) ** 2))

    start = {"w": np.array([0.0, 0.0])}
    assert RootAnchor.improves(start, np.array([0.5, 0.5]), held_out)  # 2.0 -> 0.5
    converged = {"w": np.array([1.0, 1.0])}
    assert not RootAnchor.improves(converged, np.array([0.1, -0.1]), held_out)  # 0 -> 0.02: g0 is noise
    near = {"w": np.array([0.9, 0.9])}  # 0.02 -> 0.0197: 1.5 % better, not more than the 2 % margin
    assert not RootAnchor.improves(near, np.array([0.00075, 0.00075]), held_out)
    assert RootAnchor.improves(near, np.array([0.00075, 0.00075]), held_out, margin=0.01)
    assert RootAnchor.improves(start, np.array([-1.0, 0.0]), None)  # no held-out loss: directions count

    root = np.array([1.0, 0.0])
    deltas = {"against": np.array([-1.0, 0.2]), "along": np.array([1.0, 0.1])}
    policy = EvidencePolicy()
    assert set(suspicions(vector_gram(deltas, root), policy, None)[0]) == {"against"}
    assert suspicions(vector_gram(deltas, root), policy, None, directions=False)[0] == {}
    zero = {"free-rider": np.zeros(2)}  # a zero update is evidence whatever g0's direction is worth
    assert set(suspicions(vector_gram(zero, root), policy, None, directions=False)[0]) == {"free-rider"}


def test_the_suspect_line_moves_down_as_the_root_sets_halves_disagree() -> None:
    """Known answers for RootAnchor's reproducibility measure: the trainer is also run on each half of the
    root set (ROOT_HALF) and the suspect line is min_cosine - slack x (1 - the halves' cosine); a trainer
    without halves leaves the line alone; server_app.root_rows picks the halves; suspicions uses the line."""
    from fl_chain.coordinator.server_app import root_rows
    from fl_chain.defence.anchor import ROOT_HALF

    steps = {None: np.array([1.0, 1.0]), 0: np.array([1.0, 0.0]), 1: np.array([0.0, 1.0])}

    def trainer(arrays, config):  # halves pulling apart: orthogonal updates, cosine 0
        return {"w": np.asarray(arrays["w"]) + steps[config.get(ROOT_HALF)]}

    start, config = {"w": np.zeros(2)}, {"local-epochs": 1}
    anchor = RootAnchor(trainer, halves=True)
    assert anchor.delta(start, config).tolist() == [1.0, 1.0]  # g0 itself: the whole root set
    assert anchor.agreement == 0.0 and anchor.direction_line(-0.05, 0.3) == pytest.approx(-0.35)
    steps[1] = np.array([1.0, 0.2])  # halves agreeing: cosine 0.98
    anchor.delta({"w": np.ones(2)}, config)
    assert anchor.agreement == pytest.approx(1 / np.sqrt(1.04))
    assert anchor.direction_line(-0.05, 0.3) == pytest.approx(-0.05 - 0.3 * (1 - 1 / np.sqrt(1.04)))
    plain = RootAnchor(trainer)  # halves not supported: not measured, never refused
    plain.delta(start, config)
    assert plain.agreement is None and plain.direction_line(-0.05, 0.3) == -0.05
    against = {"a": np.array([-0.3, 1.0])}  # cosine -0.29 with g0 = (1, 0): below the default -0.2
    assert suspicions(vector_gram(against, np.array([1.0, 0.0])), EvidencePolicy(), None)[0] != {}
    assert suspicions(vector_gram(against, np.array([1.0, 0.0])), EvidencePolicy(), None, line=-0.35)[0] == {}
    assert (root_rows(10, None), root_rows(10, 0), root_rows(11, 1)) == (
        slice(None),
        slice(None, 5),
        slice(5, None),
    )


def test_the_fast_vector_arithmetic_is_bit_for_bit_numpys() -> None:
    """flat_delta (subtracted in float64 in place) and coordinate_median (sorted along the short axis)
    are what validators re-derive scores with: they must equal numpy's plain formulas exactly, for odd and
    even numbers of updates, ties, NaN, mixed dtypes, 0-d, empty and Fortran-ordered arrays."""
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_):
        previous = {
            "w": (rng.normal(size=(5, 4)) * 9).astype(dtype),
            "s": np.array(3, dtype),
            "e": np.zeros((0, 2), dtype),
        }
        noise = {k: rng.normal(size=v.shape) * 5 for k, v in previous.items()}
        update = {k: (v.astype(np.float64) + noise[k]).astype(dtype) for k, v in previous.items()}
        update["w"] = np.asfortranarray(update["w"])
        plain = np.concatenate([(np.asarray(update[k], np.float64) - previous[k]).ravel() for k in previous])
        assert flat_delta(update, previous).tobytes() == plain.tobytes(), dtype
    for count in (*range(1, 8), 16, 17, 20):  # the sorting network up to 16, a sort above
        vectors = [rng.normal(size=1001) for _ in range(count)]
        vectors[0][:100] = vectors[-1][:100]  # ties
        expected = np.median(np.stack(vectors), axis=0)
        assert coordinate_median(vectors).tobytes() == expected.tobytes(), count
    vectors[1][7] = np.nan
    assert np.array_equal(coordinate_median(vectors), np.median(np.stack(vectors), axis=0), equal_nan=True)
    # three vectors take their own formula: NaN and infinities in every position, as np.median
    special = [np.nan, np.inf, -np.inf, 0.0, 1.0]
    columns = np.array([(x, y, z) for x in special for y in special for z in special]).T
    three = [columns[0].copy(), columns[1].copy(), columns[2].copy()]
    assert np.array_equal(coordinate_median(three), np.median(columns, axis=0), equal_nan=True)


def test_each_node_is_measured_against_its_own_capped_claim() -> None:
    """Known answers for RootAnchor.size_references: the median node's yardstick (|g0| x median claim /
    root examples) x sqrt(claim / median), the claim capped at 2 x the median; no root size, no yardstick.
    A large honest node sending 2.5x the median node's update is not called boosted; a node lying about
    its examples to widen its yardstick gains at most sqrt(2)."""
    root = np.array([3.0, 4.0])  # |g0| = 5
    claims = {"small": 25.0, "median": 100.0, "large": 400.0, "other": 100.0, "liar": 10_000.0}
    sizes = RootAnchor(lambda a, c: dict(a), root_examples=50).size_references(root, claims)
    assert sizes == pytest.approx(
        {"small": 5.0, "median": 10.0, "large": 10 * 2**0.5, "other": 10.0, "liar": 10 * 2**0.5}
    )
    assert RootAnchor(lambda a, c: dict(a)).size_references(root, claims) is None
    policy = EvidencePolicy()
    step = {"large": np.array([14.0, 0.0]), "liar": np.array([70.0, 0.0]), "median": np.array([8.0, 0.0])}
    suspect, _ = suspicions(vector_gram(step, root), policy, sizes)
    # 14 is 1.4x the median node's 10 but under 6 x 14.1; 70 is 7x the median's and 4.9x the liar's cap
    assert set(suspect) == set()
    suspect, _ = suspicions(vector_gram({**step, "liar": np.array([90.0, 0.0])}, root), policy, sizes)
    assert set(suspect) == {"liar"} and "boosted" in suspect["liar"]
    # one yardstick for everybody still works (a float), and None leaves only directions and copies
    assert set(suspicions(vector_gram(step, root), policy, 2.0)[0]) == {"large", "liar"}
    assert suspicions(vector_gram(step, root), policy, None)[0] == {}


def test_an_update_below_the_line_that_points_with_one_labels_root_update_is_no_evidence() -> None:
    """Known answers for RootAnchor.closest_labels (the root trainer run once per label on that label's
    examples alone, ROOT_CLASS, from the updates' model with g0's config; every cosine from one Gram pass
    per label) and for suspicions' use of it: a single-label node's update, against the balanced g0 but
    along its label's root update and no further against g0 than that root update (less the slack), is
    not suspect; a sign-flip of a balanced update points with no label's; an update that aims at the
    excuse but points further against g0 stays suspect; without labels nothing is measured."""
    from fl_chain.coordinator.server_app import root_labels
    from fl_chain.defence.anchor import ROOT_CLASS

    # g0 = (1, 1, 0) on the whole root set; label 0's examples pull along (-0.2, -0.2, 1), label 1's (1, 2, 0)
    steps = {None: np.array([1.0, 1.0, 0.0]), 0: np.array([-0.2, -0.2, 1.0]), 1: np.array([1.0, 2.0, 0.0])}
    trained: list[tuple[object, float]] = []

    def trainer(arrays, config):
        trained.append((config.get(ROOT_CLASS), config["lr"]))
        return {"w": np.asarray(arrays["w"]) + steps[config.get(ROOT_CLASS)]}

    anchor = RootAnchor(trainer, labels=[0, 1])
    start, config = {"w": np.full(3, 5.0)}, {"lr": 0.1}
    assert anchor.closest_labels({"a": {"w": np.ones(3)}}, start) == {}  # no g0 yet
    g0 = anchor.delta(start, config)
    assert trained == [(None, 0.1)]  # no one-label training until some update needs it
    label_0_vs_g0 = -0.4 / (np.sqrt(2) * np.sqrt(1.08))  # -0.27: label 0's root update against g0
    deltas = {
        "single": np.array([-0.3, -0.2, 1.2]),  # a label-0 node: -0.28 with g0, 0.998 with label 0's
        "flipped": -np.array([1.0, 0.9, 0.1]),  # a balanced update sign-flipped: 0.20 / -0.99 with the labels
        "aiming": np.array([-1.5, -1.5, 1.2]),  # 0.71 with label 0's, but -0.87 with g0: beyond -0.27 - 0.2
    }
    sent = {w: {"w": start["w"] + d} for w, d in deltas.items()}
    closest = anchor.closest_labels(sent, start)
    assert trained == [(None, 0.1), (0, 0.1), (1, 0.1)]  # once per label for all updates, g0's config
    assert closest["single"] == pytest.approx((1.3 / (np.sqrt(1.57) * np.sqrt(1.08)), label_0_vs_g0))
    assert closest["flipped"][0] == pytest.approx(0.28 / (np.sqrt(1.82) * np.sqrt(1.08)))
    assert closest["aiming"] == pytest.approx((1.8 / (np.sqrt(5.94) * np.sqrt(1.08)), label_0_vs_g0))
    gram, policy = vector_gram(deltas, g0), EvidencePolicy()
    assert set(suspicions(gram, policy, None)[0]) == set(deltas)  # by g0's direction alone
    assert set(suspicions(gram, policy, None, label=closest.get)[0]) == {"flipped", "aiming"}
    strict = EvidencePolicy(label_cosine=1.0)  # no single-label update is that aligned: suspect again
    assert set(suspicions(gram, strict, None, label=closest.get)[0]) == set(deltas)
    no_slack = EvidencePolicy(label_slack=0.0)  # single is at -0.28, just beyond its label's -0.27
    assert set(suspicions(gram, no_slack, None, label=closest.get)[0]) == set(deltas)
    assert RootAnchor(trainer).closest_labels(sent, start) == {}  # no labels: not measured
    assert root_labels(np.array([3, 1, 3])) == [1, 3] and root_labels(np.array([0.5, 1.0])) == []
