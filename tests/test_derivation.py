"""Verified rounds, the pure part: the coordinator's aggregate and scores re-derive bit for bit from the
manifest and the update blobs (defence/derivation.py), and each way of cooking a round shows as a difference.
Signatures, eligibility and the chain's records are checked on a real chain in test_verified_rounds.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from eth_account import Account

from fl_chain.coordinator import verified_round
from fl_chain.coordinator.anchored_steps import clip_influence, round_gram
from fl_chain.coordinator.screening import Screened
from fl_chain.defence import derivation, gram
from fl_chain.defence.influence import bound_step
from fl_chain.defence.scoring import ScoringPolicy, score_round
from fl_chain.errors import FlchainError
from fl_chain.protocol.manifest import EXCLUDED_SCORE, RoundManifest, parse_manifest
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.task_rules import task_rules
from fl_chain.protocol.update_signing import RoundContext, sign_update

CONTEXT = RoundContext(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3", 1, 4)


def _round(seed: int, method: str = "cosine", clip: dict[int, float] | None = None, influence: float = 0.0):
    """A coordinator's verified round over 5 random updates (one excluded), as ChainStrategy builds it;
    with `influence` > 0 (a size reference) its updates are clipped to it by the coordinator's own
    clip_influence, reading norms from the round's Gram matrix (coordinator/anchored_judging.py)."""
    rng = np.random.default_rng(seed)
    previous = {"w": rng.normal(size=(7, 5)).astype(np.float32), "b": rng.normal(size=5).astype(np.float32)}
    accounts = [Account.create() for _ in range(5)]
    screened = Screened()
    for i, account in enumerate(accounts):
        arrays = {
            k: (v + rng.normal(scale=0.1, size=v.shape)).astype(np.float32) for k, v in previous.items()
        }
        weight = int(rng.integers(10, 200)) if i != 3 else 5_000  # node 3 claims far more than the others
        signed = sign_update(account, *vars(CONTEXT).values(), hash_arrays(arrays), weight)
        screened.claims[account.address] = signed
        if i == 4:
            screened.dropped[account.address] = "suspect: points away from g0"
            continue
        screened.signed[account.address] = signed
        screened.updates[account.address] = screened.originals[account.address] = arrays
        screened.weights[account.address] = float(weight)
    if influence > 0:
        clip_influence(screened, {}, influence, previous, 1.0, round_gram(screened, previous, None))
    for i, factor in (clip or {}).items():
        who = accounts[i].address
        screened.updates[who] = derivation.clip_update(previous, screened.updates[who], factor)
        screened.clipped[who] = factor
    weights = verified_round.canonical_weights(screened, 2.0)
    _, scores = score_round(ScoringPolicy(method), previous, screened.updates, screened.weights, None, 4)
    model = derivation.aggregate(previous, screened.updates, weights)
    model, step = bound_step(model, previous, 0.05, 1.5)  # a step bound that bites
    rules = task_rules(method, 2.0, 1.0, 1.5, "rules")  # clip and step bounds on, as this round uses them
    built = verified_round.build(CONTEXT, screened, scores, b"\1" * 32, hash_arrays(model), rules, step)
    blobs = {e.update: screened.originals[e.node] for e in built.manifest.included}
    return previous, built, blobs, model, accounts


@pytest.mark.parametrize("seed", range(4))
def test_an_honest_round_rederives_bit_for_bit(seed: int) -> None:
    previous, built, blobs, model, accounts = _round(seed, clip={1: 0.5})
    manifest = parse_manifest(built.manifest.to_json(), "manifest")  # through its published JSON
    assert manifest == built.manifest and manifest.root() == built.root
    rederived, differences = derivation.rederive(manifest, previous, blobs)
    assert differences == []
    assert hash_arrays(rederived) == hash_arrays(model)
    assert manifest.step < 1.0  # the step bound was part of the derivation
    excluded = manifest.excluded
    assert [e.node for e in excluded] == [accounts[4].address] and excluded[0].score == EXCLUDED_SCORE
    assert "suspect" in excluded[0].reason
    capped = manifest.entry_of(accounts[3].address)
    assert capped.claimed == 5_000  # the leaf holds what the node signed; the cap is re-derived


@pytest.mark.parametrize("seed", range(3))
def test_a_round_clipped_by_the_coordinators_influence_bound_rederives_bit_for_bit(seed: int) -> None:
    """Clip factors the coordinator computed from Gram-matrix norms travel in the manifest; a validator
    applies them to the updates as sent (it never recomputes them) and gets the coordinator's model."""
    previous, built, blobs, model, _ = _round(seed, influence=0.6)
    manifest = parse_manifest(built.manifest.to_json(), "manifest")
    clipped = [e for e in manifest.included if e.clip < 1.0]
    assert clipped and all(0.0 < e.clip < 1.0 for e in clipped)
    rederived, differences = derivation.rederive(manifest, previous, blobs)
    assert differences == []
    assert hash_arrays(rederived) == hash_arrays(model)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int64])
def test_clipping_block_by_block_is_the_whole_array_formula_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, dtype: type
) -> None:
    """clip_update computes a block at a time (here blocks of 7, ending mid-array) what the whole-array
    formula computed, bit for bit, whatever the dtype, memory order or shape."""
    monkeypatch.setattr(gram, "BLOCK", 7)
    rng = np.random.default_rng(2)
    previous = {
        "w": np.asfortranarray((rng.normal(size=(6, 5)) * 5).astype(dtype)),
        "scalar": np.array(3, dtype),
        "empty": np.zeros((0, 3), dtype),
        "b": (rng.normal(size=23) * 5).astype(dtype),
    }
    update = {k: (v + rng.normal(0, 3, v.shape)).astype(dtype) for k, v in previous.items()}
    update["w"] = np.asfortranarray(update["w"])
    for factor in (0.3, 1 / 3, 0.999):
        whole = {
            k: (previous[k].astype(np.float64) + (np.asarray(v, np.float64) - previous[k]) * factor).astype(
                v.dtype, copy=False
            )
            for k, v in update.items()
        }
        blocked = derivation.clip_update(previous, update, factor)
        assert list(blocked) == list(whole)
        for name, value in whole.items():
            assert blocked[name].dtype == value.dtype and blocked[name].shape == value.shape
            np.testing.assert_array_equal(blocked[name], value)
            assert np.ascontiguousarray(blocked[name]).tobytes() == np.ascontiguousarray(value).tobytes()
        assert hash_arrays(blocked) == hash_arrays(whole)


def test_every_cooked_round_shows_a_difference() -> None:
    previous, built, blobs, _, _ = _round(7)
    manifest = built.manifest
    first = manifest.included[0]

    def differences(cooked: RoundManifest, updates=blobs) -> list[str]:
        return [d.what for d in derivation.rederive(cooked, previous, updates)[1]]

    dropped = replace(manifest, entries=tuple(e for e in manifest.entries if e is not first))
    assert any("aggregate to" in d for d in differences(dropped))
    reweighted = replace(
        manifest,
        entries=tuple(replace(e, clip=0.3) if e is first else e for e in manifest.entries),
    )
    assert any("aggregate to" in d for d in differences(reweighted))
    rescored = replace(
        manifest,
        entries=tuple(replace(e, score=e.score // 2 + 1) if e is first else e for e in manifest.entries),
    )
    assert any(f"score of {first.node}" in d for d in differences(rescored))
    swapped = dict(blobs)
    swapped[first.update] = {k: v + 1 for k, v in blobs[first.update].items()}  # other arrays, same name
    assert any("aggregate to" in d for d in differences(manifest, swapped))
    boosted = replace(manifest, step=1.5)
    assert any("step factor" in d for d in differences(boosted))
    inflated = replace(
        manifest, entries=tuple(replace(e, clip=2.0) if e is first else e for e in manifest.entries)
    )
    assert any("clip factor" in d for d in differences(inflated))
    assert replace(manifest, entries=manifest.entries[1:]).root() != manifest.root()


def test_fltrust_scores_are_not_rederived_but_the_model_is() -> None:
    previous, built, blobs, _, _ = _round(3, method="data-size")
    assert derivation.rederive(built.manifest, previous, blobs)[1] == []
    assert "fltrust" not in derivation.RECOMPUTABLE_SCORES and "cosine" in derivation.RECOMPUTABLE_SCORES


def test_capped_weights_are_integers_from_the_signed_claims() -> None:
    assert derivation.effective_weights({"a": 10, "b": 20, "c": 1000}, 2.0) == {"a": 10, "b": 20, "c": 40}
    assert derivation.effective_weights({"a": 10, "b": 1000}, 0.0) == {"a": 10, "b": 1000}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=1), "manifest version"),
        (lambda d: d.update(model="0x12"), "model is not"),
        (lambda d: d["entries"][0].update(node="0xnope"), r"entries\[0\].node"),
        (lambda d: d["entries"][0].update(claimed=-1), "uint256"),
        (lambda d: d["entries"][0].update(signature="0x00"), "signature"),
        (lambda d: d["entries"].reverse(), "canonical order"),
        (lambda d: d.update(step=float("nan")), "finite"),
        (lambda d: d.update(entries="all of them"), "entries is missing"),
    ],
)
def test_a_damaged_manifest_is_a_one_line_error(edit, message: str) -> None:
    import json

    data = json.loads(_round(1)[1].manifest.to_json())
    edit(data)
    with pytest.raises(FlchainError, match=message) as info:
        parse_manifest(json.dumps(data).encode(), "rounds/x.json")
    assert "\n" not in str(info.value) and "rounds/x.json" in str(info.value)
    with pytest.raises(FlchainError, match="not a JSON"):
        parse_manifest(b"\xff\x00", "rounds/x.json")
