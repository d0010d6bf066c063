"""Scoring methods on constructed cases with known answers (a quadratic validation loss)."""

from __future__ import annotations

import numpy as np
import pytest

from fl_chain.defence.scoring import (
    SCALE,
    SCORERS,
    RoundInput,
    exact_shapley,
    fedavg,
    find_outliers,
    gtg_shapley_scores,
    normalise,
)

TARGET = {"w": np.array([1.0, -2.0, 0.5], dtype=np.float32), "b": np.array([0.3], dtype=np.float32)}
PREVIOUS = {k: np.zeros_like(v) for k, v in TARGET.items()}


def quadratic_loss(arrays) -> float:
    """Squared distance to TARGET: the perfect update is TARGET itself."""
    return float(sum(np.sum((arrays[k].astype(np.float64) - TARGET[k]) ** 2) for k in TARGET))


def case(**extra) -> RoundInput:
    updates = {
        "honest-a": TARGET,
        "honest-b": TARGET,  # identical to honest-a
        "null": PREVIOUS,  # returns the global model unchanged
        "harmful": {k: -v for k, v in TARGET.items()},
    }
    weights = dict.fromkeys(updates, 100.0)
    return RoundInput(PREVIOUS, updates, weights, quadratic_loss, **extra)


@pytest.mark.parametrize("method", ["loss-delta", "loo", "gtg-shapley", "cosine"])
def test_known_answers(method: str) -> None:
    scores = SCORERS[method](case(budget=200))
    spread = max(scores.values()) - min(scores.values())
    assert scores["harmful"] == min(scores.values())
    assert scores["honest-a"] == pytest.approx(scores["honest-b"], abs=0.02 * spread)
    assert scores["honest-a"] > scores["null"] > scores["harmful"]
    if method in ("loss-delta", "cosine"):
        assert scores["null"] == pytest.approx(0.0, abs=1e-9)
    else:  # in the FedAvg game a null update only dilutes: close to 0 relative to the others
        assert abs(scores["null"]) < 0.3 * spread


def test_data_size_is_the_naive_baseline() -> None:
    inp = case()
    inp.weights = {"honest-a": 10.0, "honest-b": 10.0, "null": 50.0, "harmful": 5.0}
    assert SCORERS["data-size"](inp)["null"] == 50.0  # it rewards size, not usefulness


def test_gtg_shapley_is_close_to_exact_shapley_on_four_nodes() -> None:
    inp = case(budget=16, seed=3)
    players = sorted(inp.updates)

    def value(members: frozenset) -> float:
        arrays = fedavg(PREVIOUS, inp.updates, inp.weights, members) if members else PREVIOUS
        return -quadratic_loss(arrays)

    exact = exact_shapley(players, value)
    estimate = gtg_shapley_scores(inp, epsilon=1e-6)
    spread = max(exact.values()) - min(exact.values())
    for p in players:
        assert estimate[p] == pytest.approx(exact[p], abs=0.05 * spread)
    assert sum(exact.values()) == pytest.approx(value(frozenset(players)) - value(frozenset()))
    assert inp.evaluations <= 16  # within the budget: 2^4 coalitions, each evaluated once


def test_gtg_between_round_truncation() -> None:
    inp = RoundInput(PREVIOUS, {"a": PREVIOUS, "b": PREVIOUS}, {"a": 1.0, "b": 1.0}, quadratic_loss)
    assert gtg_shapley_scores(inp) == {"a": 0.0, "b": 0.0}
    assert inp.evaluations == 2


def test_normalise_to_fixed_point_relative_to_the_typical_contribution() -> None:
    # positive values 4, 2, 1: median 2 -> a and b at or above it score SCALE, c half, harm and NaN 0
    assert normalise({"a": 4.0, "b": 2.0, "c": 1.0, "d": -5.0, "e": float("nan")}) == {
        "a": SCALE,
        "b": SCALE,
        "c": SCALE // 2,
        "d": 0,
        "e": 0,
    }
    assert normalise({"a": -1.0}) == {"a": 0}


def test_outliers_flag_boosted_free_riding_and_flipped_updates() -> None:
    rng = np.random.default_rng(0)
    honest = {f"h{i}": {k: v + rng.normal(0, 0.05, v.shape) for k, v in TARGET.items()} for i in range(5)}
    updates = {
        **honest,
        "boosted": {k: 10 * v for k, v in TARGET.items()},
        "free-rider": PREVIOUS,
        "flipped": {k: -v for k, v in TARGET.items()},
    }
    flagged = find_outliers(PREVIOUS, updates)
    assert set(flagged) == {"boosted", "free-rider", "flipped"}


def test_fltrust_scores_are_measured_from_the_suspect_line_and_credit_only_what_was_aggregated() -> None:
    """FLTrust's ReLU(cos(update, g0)) measured from the round's suspect line: with g0 along x, updates
    at cosines 1, 0, line + 0.01 and -1 score 1 - line, -line, 0.01 and 0; a null update 0 (its cosine
    says nothing); an update clipped to 40 % of its length 40 % of its score. From 0 (no evidence rules)
    it is FLTrust's own score."""
    previous = {"w": np.zeros(3, np.float32)}
    line = -0.3
    just_inside = np.array([line + 0.01, np.sqrt(1 - (line + 0.01) ** 2), 0.0])
    updates = {
        "along": {"w": np.array([2.0, 0.0, 0.0], np.float32)},
        "orthogonal": {"w": np.array([0.0, 0.0, 5.0], np.float32)},
        "just-inside": {"w": (3 * just_inside).astype(np.float32)},
        "against": {"w": np.array([-1.0, 0.0, 0.0], np.float32)},
        "null": {"w": np.zeros(3, np.float32)},
        "clipped": {"w": np.array([0.5, 0.0, 0.0], np.float32)},
    }
    weights = dict.fromkeys(updates, 10.0)
    root = np.array([1.0, 0.0, 0.0])
    inp = RoundInput(previous, updates, weights, root=root, direction_line=line, clipped={"clipped": 0.4})
    scores = SCORERS["fltrust"](inp)
    expected = {"along": 1.3, "orthogonal": 0.3, "just-inside": 0.01, "against": 0.0, "null": 0.0}
    assert scores == pytest.approx(expected | {"clipped": 0.4 * 1.3}, abs=1e-6)
    assert normalise(scores)["just-inside"] < SCALE // 10 < normalise(scores)["orthogonal"]

    classic = SCORERS["fltrust"](RoundInput(previous, updates, weights, root=root))
    assert classic == pytest.approx(
        {"along": 1.0, "orthogonal": 0.0, "just-inside": 0.0, "against": 0.0, "null": 0.0, "clipped": 1.0},
        abs=1e-6,
    )
