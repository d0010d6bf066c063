"""Known answers for the experiments' attacks of the literature (issue 25): backdoors (BadNets, DBA,
Neurotoxin, boost) and their success rate, Min-Max and Min-Sum, PoisonedFL, flchain-adaptive attacks and the
periodic wrapper. Pure numpy on tiny vectors: no Flower, no chain."""

from __future__ import annotations

import numpy as np
import pytest

from fl_chain.defence.evidence import EvidencePolicy, suspicions
from fl_chain.defence.gram import vector_gram
from fl_chain.defence.vectors import cosine
from fl_chain.experiments.agr_tailored import largest_gamma, min_max, min_sum, perturbation
from fl_chain.experiments.attacking_client import poison_data
from fl_chain.experiments.attacks import active_attack, apply_attack
from fl_chain.experiments.backdoor import (
    DIGITS_TRIGGER,
    attack_success_rate,
    neurotoxin_mask,
    poison,
    trigger_pixels,
)
from fl_chain.experiments.collusion import colluding_deltas
from fl_chain.experiments.multi_round import adaptive_delta, adaptive_step, poisonedfl_step, sign_vector
from fl_chain.wire.node_config import NodeConfig


def test_badnets_stamps_the_trigger_on_a_fraction_relabelled_to_the_target() -> None:
    x, y = np.zeros((10, 64), np.float32), np.arange(10)
    px, py = poison(x, y, DIGITS_TRIGGER, target=3, fraction=0.4, seed=0)
    stamped = np.flatnonzero(px[:, DIGITS_TRIGGER].min(axis=1) == 1.0)
    assert len(stamped) == 4 and (py[stamped] == 3).all()
    clean = np.setdiff1d(np.arange(10), stamped)
    assert (px[clean] == 0).all() and (py[clean] == clean).all() and (x == 0).all()  # input untouched


def test_dba_parts_split_the_trigger_and_together_are_the_whole() -> None:
    parts = [trigger_pixels({"kind": "dba", "parts": 4, "part": i}) for i in range(4)]
    assert parts[0] == (38, 39) and sorted(sum(parts, ())) == sorted(DIGITS_TRIGGER)
    assert trigger_pixels({"kind": "backdoor"}) == DIGITS_TRIGGER


def test_attack_success_rate_counts_triggered_examples_of_other_classes_labelled_target() -> None:
    x, y = np.zeros((4, 64), np.float32), np.array([0, 1, 2, 3])

    def predict(batch: np.ndarray) -> np.ndarray:  # a backdoored "model": target 0 on 2 of the 3 rows
        assert (batch[:, list(DIGITS_TRIGGER)] == 1).all()
        return np.array([0, 1, 0])

    assert attack_success_rate(predict, x, y, target=0) == pytest.approx(2 / 3)  # 3 non-target rows
    assert attack_success_rate(lambda b: np.full(len(b), 5), x, y, target=0) == 0.0


def test_neurotoxin_masks_the_top_benign_coordinates_and_boost_scales() -> None:
    assert neurotoxin_mask(np.array([0.1, -5.0, 0.2, 3.0]), 0.5).tolist() == [True, False, True, False]
    received = {"w": np.zeros(4, np.float32)}
    trained = {"w": np.array([1.0, 1.0, 1.0, 1.0], np.float32)}
    state = {"previous": np.array([0.0, 5.0, 0.0, -3.0])}  # last global change: +0 -5 +0 +3
    attack = {"kind": "backdoor", "neurotoxin": 0.5, "boost": 3.0}
    assert apply_attack(attack, received, trained, 1, state)["w"].tolist() == [3.0, 0.0, 3.0, 0.0]
    assert apply_attack({"kind": "dba"}, received, trained, 1, {})["w"].tolist() == [1.0] * 4


def test_min_max_and_min_sum_known_answers() -> None:
    benign = np.array([[0.0], [0.0], [3.0]])  # mean 1, unit-vector perturbation -1
    # Min-Max: max(|1-g|, |-2-g|) <= 3 (largest benign distance) -> g = 1 -> 0
    assert min_max(benign)[0] == pytest.approx(0.0, abs=1e-4)
    # Min-Sum: 2(1-g)^2 + (2+g)^2 = 6 + 3g^2 <= 18 (largest benign sum) -> g = 2 -> -1
    assert min_sum(benign)[0] == pytest.approx(-1.0, abs=1e-4)
    two = np.array([[1.0, -2.0], [3.0, -2.0]])
    assert perturbation(two, "sign").tolist() == [-1.0, 1.0]
    assert perturbation(two, "std").tolist() == [-1.0, 0.0]
    assert perturbation(two, "unit-vec") == pytest.approx(np.array([-2.0, 2.0]) / np.sqrt(8))
    assert largest_gamma(lambda g: g <= 4.0) == pytest.approx(4.0, abs=1e-4)
    assert largest_gamma(lambda g: False) == 0.0


def test_min_max_colluders_send_the_same_update_inside_the_benign_spread() -> None:
    rng = np.random.default_rng(0)
    deltas = {i: rng.normal(1.0, 0.5, 20) for i in range(6)}
    out = colluding_deltas(deltas, {0: {"kind": "min-max"}, 1: {"kind": "min-max", "perturbation": "sign"}})
    benign = np.stack(list(deltas.values()))
    spread = max(np.linalg.norm(a - b) for a in benign for b in benign)
    assert max(np.linalg.norm(out[0] - b) for b in benign) <= spread + 1e-6
    mean = benign.mean(axis=0)
    assert out[0] @ mean < 0.5 * (mean @ mean)  # pushed against the mean by more than half its length
    assert not np.allclose(out[1], out[0])  # another perturbation, another update


def test_poisonedfl_keeps_one_sign_vector_and_shrinks_when_the_model_does_not_follow() -> None:
    attack = {"kind": "poisonedfl", "seed": 3, "period": 2, "beta": 0.5, "scale": 2.0}
    sign, honest, state = sign_vector(6, 3), np.array([1.0, -1.0, 2.0, 0.0, 1.0, 1.0]), {}
    first = poisonedfl_step(attack, np.zeros(6), honest, state)
    assert (np.sign(first[first != 0]) == sign[first != 0]).all()
    assert np.linalg.norm(first) == pytest.approx(2.0 * np.linalg.norm(honest))
    against = -sign * 0.1  # the global model moves against s, two rounds in a row
    poisonedfl_step(attack, against, honest, state)
    second = poisonedfl_step(attack, 2 * against, honest, state)
    assert state["scale"] == pytest.approx(1.0)  # halved once the window saw no progress along s
    assert (np.sign(second) == sign).all()  # magnitudes of the last global change, signs of s


def test_adaptive_attack_sits_just_inside_flchains_published_thresholds() -> None:
    honest = np.random.default_rng(1).normal(size=50)
    crafted = adaptive_delta(honest, sign_vector(50, 0), cosine=0.2, size=3.0)
    assert cosine(crafted, honest) == pytest.approx(0.2)
    assert np.linalg.norm(crafted) == pytest.approx(3.0 * np.linalg.norm(honest))
    policy, default = EvidencePolicy(), adaptive_step({"kind": "adaptive"}, honest)
    assert cosine(default, honest) == pytest.approx(policy.min_cosine + 0.01)
    # judged against a root update equal to its estimate, it is suspect of nothing
    suspect, _ = suspicions(
        vector_gram({"a": default}, honest), policy, reference=float(np.linalg.norm(honest))
    )
    assert suspect == {}


def test_periodic_attacks_only_every_period_th_round_and_data_hook_stamps_backdoors() -> None:
    periodic = {"kind": "periodic", "period": 3, "then": {"kind": "sign-flip"}}
    rounds = [active_attack(periodic, r).get("kind") for r in (1, 2, 3, 6)]
    assert rounds == [None, None, "sign-flip", "sign-flip"]
    settings = NodeConfig(deployment="deployment.json").for_partition(
        0, 1, private_key="0x01", attack={"kind": "dba", "parts": 4, "part": 1, "target": 2, "fraction": 1.0}
    )
    x, y = poison_data(settings, 1, np.zeros((3, 64), np.float32), np.array([0, 1, 5]))
    assert (y == 2).all() and (x[:, [46, 47]] == 1).all() and x[:, [38, 39]].sum() == 0
