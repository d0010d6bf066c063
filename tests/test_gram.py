"""The blocked Gram matrix (defence/gram.py) gives the whole-vector formulas' norms and cosines, over many
blocks, every dtype and odd shapes; scores and outlier checks built on it keep their known answers; the
blocked update check finds NaN and Inf wherever they are."""

from __future__ import annotations

import numpy as np
import pytest

from fl_chain.defence import gram
from fl_chain.defence.evidence import EvidencePolicy, suspicions
from fl_chain.defence.gram import MEDIAN, ROOT, delta_gram, median_cosines, root_gram, vector_gram
from fl_chain.defence.scoring import find_outliers
from fl_chain.defence.update_checks import check_update
from fl_chain.defence.vectors import coordinate_median, cosine, flat_delta


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 7 parameters: every array spans several, and blocks end mid-array."""
    monkeypatch.setattr(gram, "BLOCK", 7)


def _model(rng: np.random.Generator, dtype: type) -> dict[str, np.ndarray]:
    return {
        "w": np.asfortranarray((rng.normal(size=(6, 5)) * 4).astype(dtype)),
        "scalar": np.array(2, dtype),
        "empty": np.zeros((0, 3), dtype),
        "b": (rng.normal(size=23) * 4).astype(dtype),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 11, 17])
def test_the_blocked_gram_matrix_equals_the_whole_vector_formulas(
    small_blocks: None, dtype: type, count: int
) -> None:
    """Every dot product, norm and cosine among the deltas, g0 and the median delta equals the formula on
    whole flattened vectors (to rounding), for 1-17 updates (the sorting network and the sort)."""
    rng = np.random.default_rng(count)
    previous = _model(rng, dtype)
    updates = {
        f"n{i}": {
            k: (v.astype(np.float64) + rng.normal(size=v.shape) * 3).astype(dtype)
            for k, v in previous.items()
        }
        for i in range(count)
    }
    updates["n0"] = {k: v.copy() for k, v in previous.items()}  # a null update: cosine 0 by definition
    deltas = {who: flat_delta(arrays, previous) for who, arrays in updates.items()}
    root = rng.normal(size=deltas["n0"].size)
    median = coordinate_median(list(deltas.values()))
    result = delta_gram(updates, previous, root=root, median=True)
    vectors = {**deltas, ROOT: root, MEDIAN: median}
    for a, va in vectors.items():
        assert result.norm(a) == pytest.approx(float(np.linalg.norm(va)), rel=1e-12, abs=1e-12)
        for b, vb in vectors.items():
            assert result.dot(a, b) == pytest.approx(float(va @ vb), rel=1e-12, abs=1e-9)
            assert result.cosine(a, b) == pytest.approx(cosine(va, vb), rel=1e-12, abs=1e-12)
    assert median_cosines(updates, previous) == pytest.approx(
        {w: cosine(d, median) for w, d in deltas.items()}
    )
    with_root = root_gram(updates, previous, root)
    assert {w: with_root.cosine(w, ROOT) for w in updates} == pytest.approx(
        {w: cosine(d, root) for w, d in deltas.items()}
    )
    assert median_cosines(updates, previous)["n0"] == 0.0


def test_rows_of_a_round_after_drops_and_clips_are_read_without_the_parameters(small_blocks: None) -> None:
    """gram.rows: a dropped update's row is left out and a clipped one's dot products scale by its factor,
    equal to the Gram matrix of the scaled deltas; `cosines` is `cosine` for every pair, bit for bit;
    vector_gram of the whole vectors is delta_gram's to rounding."""
    rng = np.random.default_rng(5)
    previous = _model(rng, np.float64)
    updates = {f"n{i}": {k: v + rng.normal(size=v.shape) for k, v in previous.items()} for i in range(4)}
    updates["zero"] = dict(previous)
    root = rng.normal(size=flat_delta(previous, previous).size)
    full = delta_gram(updates, previous, root=root)
    kept = full.rows(["n3", "zero", "n0", "n1"], {"n0": 0.25, "n3": 0.5})
    assert kept.labels == ("n3", "zero", "n0", "n1", ROOT) and kept.members == ("n3", "zero", "n0", "n1")
    deltas = {w: flat_delta(u, previous) for w, u in updates.items()}
    scaled = {"n3": 0.5 * deltas["n3"], "zero": deltas["zero"], "n0": 0.25 * deltas["n0"], "n1": deltas["n1"]}
    expected = vector_gram(scaled, root)
    np.testing.assert_allclose(kept.matrix, expected.matrix, rtol=1e-12, atol=1e-12)
    assert vector_gram(deltas, root).labels == full.labels
    np.testing.assert_allclose(vector_gram(deltas, root).matrix, full.matrix, rtol=1e-12, atol=1e-12)
    labels = [ROOT, *kept.members]
    cosines = kept.cosines(labels)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            assert cosines[i, j] == kept.cosine(a, b)  # the same arithmetic: equal, not approximately
    assert cosines[labels.index("zero")].tolist() == [0.0] * len(labels)
    with pytest.raises(ValueError, match="not a row"):
        kept.norm("n2")  # dropped


def test_a_root_update_of_another_size_is_refused() -> None:
    """g0 must have the model's number of parameters: a mismatch is an error, not a silent short sum."""
    previous = {"w": np.zeros(5, np.float32)}
    with pytest.raises(ValueError, match="root update has 4 parameters, the model 5"):
        delta_gram({"a": previous}, previous, root=np.ones(4))


def test_outliers_keep_their_known_answers_across_blocks(small_blocks: None) -> None:
    """A boosted, a zero and a sign-flipped update among honest ones are found as before."""
    rng = np.random.default_rng(3)
    previous = {"w": np.zeros((5, 9), np.float32), "b": np.zeros(4, np.float32)}
    honest = {k: rng.normal(size=v.shape).astype(np.float32) + 1 for k, v in previous.items()}
    updates = {f"h{i}": {k: v + np.float32(0.1 * i) for k, v in honest.items()} for i in range(5)}
    updates["boost"] = {k: v * 10 for k, v in honest.items()}
    updates["zero"] = {k: np.zeros_like(v) for k, v in previous.items()}
    updates["flip"] = {k: -v for k, v in honest.items()}
    found = find_outliers(previous, updates)
    assert set(found) == {"boost", "zero", "flip"}
    assert "> 3 x median" in found["boost"] and "/ 3" in found["zero"] and "away" in found["flip"]
    assert suspicions(
        vector_gram({w: flat_delta(u, previous) for w, u in updates.items()}, flat_delta(honest, previous)),
        EvidencePolicy(),
    )[0].keys() >= {"boost", "zero", "flip"}  # the evidence agrees


def test_the_blocked_update_check_finds_nan_and_inf_in_any_block(small_blocks: None) -> None:
    """NaN or Inf anywhere (first block, a middle block, the last element of the last array) is refused
    with the array's name; the distance of a clean update is the whole-vector one."""
    previous = {"w": np.zeros((4, 10), np.float32), "b": np.zeros(9, np.float32)}
    clean = {"w": np.full((4, 10), 0.5, np.float32), "b": np.full(9, 0.5, np.float32)}
    assert check_update(clean, previous, 10.0) is None
    assert check_update(clean, previous, 3.0) == "update norm 3.5 exceeds the limit 3"  # sqrt(49 x 0.25)
    for name, index, bad in (("w", (0, 0), np.nan), ("w", (2, 3), np.inf), ("b", (8,), -np.inf)):
        broken = {k: v.copy() for k, v in clean.items()}
        broken[name][index] = bad
        assert check_update(broken, previous, 1e9) == f"array {name!r} contains NaN or Inf"


def test_scores_read_a_gram_of_exactly_their_updates_and_recompute_otherwise(small_blocks: None) -> None:
    """The outlier check's Gram (participants and MEDIAN) gives cosine scores bit for bit equal to a fresh
    pass, and round_gram's (participants and ROOT) is the one fltrust scores read; a Gram of other
    participants, another order or with a row more is not read (the parameters are)."""
    from fl_chain.defence.scoring import ScoringPolicy, score_round

    rng = np.random.default_rng(5)
    previous = {"w": np.zeros((4, 6), np.float32), "b": np.zeros(5, np.float32)}
    updates = {
        f"n{i}": {k: rng.normal(size=v.shape).astype(np.float32) for k, v in previous.items()}
        for i in range(4)
    }
    root = rng.normal(size=29)
    weights = {w: 10.0 for w in updates}
    kept: list = []
    assert find_outliers(previous, updates, 3.0, kept) == {}
    assert kept[0].labels == (*updates, MEDIAN)
    fresh = score_round(ScoringPolicy("cosine"), previous, updates, weights, None, 1)
    assert (
        score_round(ScoringPolicy("cosine"), previous, updates, weights, None, 1, grams=tuple(kept)) == fresh
    )
    with_root = delta_gram(updates, previous, root=root)
    assert root_gram(updates, previous, root, [with_root]) is with_root  # read, not a second pass

    # read, not recomputed: a Gram with the right rows and altered numbers changes the answer ...
    altered = gram.DeltaGram(kept[0].labels, kept[0].matrix * np.outer([1, 1, 1, -1, 1], [1, 1, 1, -1, 1]))
    assert median_cosines(updates, previous, [altered])["n3"] == pytest.approx(
        -median_cosines(updates, previous)["n3"]
    )
    # ... and one of another order, of fewer participants or with ROOT beside MEDIAN is not taken
    reordered = dict(reversed(list(updates.items())))
    fewer = {w: updates[w] for w in list(updates)[:3]}
    both = delta_gram(updates, previous, root=root, median=True)
    for subset, grams in ((reordered, [altered]), (fewer, [altered]), (updates, [both])):
        assert median_cosines(subset, previous, grams) == median_cosines(subset, previous)
