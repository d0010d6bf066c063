"""Misbehaviour of simulated clients, for experiments and tests. An attack turns the honestly trained
arrays into what a faulty or malicious node would send.

Client-side kinds: sign-flip (send global - scale*(update)), noise (Gaussian, std), free-rider (return the
model received), scale (boost the update by a factor; "boosting just under a filter" is a factor chosen
below it), label-flip (train on flipped labels; applied to the data by attacking_client.py, the arrays pass
unchanged), nan (poison one value), wrong-shape (drop a row), sybil (every node with the same `seed` sends
the same noise update: colluding identities), lie-examples (an honest update with the example count `value`
claimed instead: inf, nan, -1, 2**80; applied to the reply by attacking_client.py), unsigned (an honest
update sent without the node's signed claim on it, removed by attacking_client.py: in a verified round the
reply is answered but carries no valid claim), and on-off (behave for
`after` rounds, then run the attack in `then`: an attacker that earns reputation first) and periodic (run
`then` only every `period`-th round: suspect in fewer rounds than the evidence window's `needed`), and
label-push (trains on its examples of one `label` only, applied by attacking_client.py, and boosts the
update by `boost`: it looks like an honest node that holds that label, which the evidence rules excuse
for pointing against g0, defence/evidence.py, and pushes the model towards that label), absent (the node
answers no message: not an attack but the honest-only reference, the federation of the
honest nodes alone on the same partitions; applied by attacking_client.py).
Backdoors: backdoor (BadNets) and dba poison part of the training data (experiments/backdoor.py, applied by
attacking_client.py) and may then mask the update Neurotoxin-style (`neurotoxin`: the top fraction of the
last global change left alone) and boost it (`boost`: model replacement). Vector attacks with state across
rounds, poisonedfl and adaptive, live in experiments/multi_round.py. Coordinated attacks that need every
participant's update, ALIE, IPM, Min-Max and Min-Sum, live in experiments/collusion.py.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

import numpy as np

from fl_chain.defence.vectors import flat_delta, previous_vector, unflatten
from fl_chain.errors import FlchainError
from fl_chain.experiments.backdoor import neurotoxin_mask
from fl_chain.experiments.multi_round import adaptive_step, poisonedfl_step

ATTACKS = (
    "sign-flip",
    "noise",
    "free-rider",
    "scale",
    "label-flip",
    "nan",
    "wrong-shape",
    "sybil",
    "on-off",
    "lie-examples",
    "unsigned",
    "periodic",
    "backdoor",
    "dba",
    "poisonedfl",
    "adaptive",
    "alie",
    "ipm",
    "min-max",
    "min-sum",
    "absent",
    "label-push",
)
COORDINATED = ("alie", "ipm", "min-max", "min-sum")  # applied by experiments/collusion.py
BACKDOORS = ("backdoor", "dba")  # the data is poisoned by attacking_client.py
VECTOR_ATTACKS = (*BACKDOORS, "poisonedfl", "adaptive")


def active_attack(attack: Mapping[str, object], round_number: int) -> Mapping[str, object]:
    """The attack a node runs in this round (on-off attackers behave until round `after`, periodic ones
    in every round but each `period`-th)."""
    if attack.get("kind") == "on-off":
        return dict(attack.get("then", {})) if round_number > int(attack.get("after", 3)) else {}
    if attack.get("kind") == "periodic":
        return dict(attack.get("then", {})) if round_number % int(attack.get("period", 3)) == 0 else {}
    return attack


def apply_attack(
    attack: Mapping[str, object],
    received: Mapping[str, np.ndarray],
    trained: Mapping[str, np.ndarray],
    round_number: int = 1,
    state: MutableMapping[str, object] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays a node with this attack sends in this round, given what it received and trained;
    `state` (kept by the caller per node) carries what multi-round attacks remember."""
    attack = active_attack(attack or {}, round_number)
    kind = attack.get("kind") if attack else None
    if not kind or kind in COORDINATED:
        return dict(trained)
    if kind in VECTOR_ATTACKS:
        return vector_attack(attack, received, trained, {} if state is None else state)
    seed = int(attack.get("seed", 0))
    # Sybils share a seed and draw the same noise every round; other attackers differ per node.
    rng = np.random.default_rng([seed, round_number] if kind == "sybil" else seed)
    out: dict[str, np.ndarray] = {}
    for name, value in trained.items():
        base = received[name]
        delta = value - base
        if kind == "sign-flip":
            out[name] = (base - float(attack.get("scale", 1.0)) * delta).astype(value.dtype)
        elif kind in ("noise", "sybil"):
            origin = value if kind == "noise" else base
            out[name] = (origin + rng.normal(0, float(attack.get("std", 1.0)), value.shape)).astype(
                value.dtype
            )
        elif kind == "free-rider":
            out[name] = base.copy()
        elif kind == "scale":
            out[name] = (base + float(attack.get("scale", 10.0)) * delta).astype(value.dtype)
        elif kind == "label-push":
            out[name] = (base + float(attack.get("boost", 1.0)) * delta).astype(value.dtype)
        elif kind in ("nan", "wrong-shape", "label-flip", "lie-examples", "unsigned", "absent"):
            out[name] = value.copy()
        else:
            raise FlchainError(f"unknown attack {kind!r}: expected one of {', '.join(ATTACKS)}")
    first = next(iter(out))
    if kind == "nan":
        out[first].flat[0] = np.nan
    elif kind == "wrong-shape":
        out[first] = out[first][:-1]
    return out


def vector_attack(
    attack: Mapping[str, object],
    received: Mapping[str, np.ndarray],
    trained: Mapping[str, np.ndarray],
    state: MutableMapping[str, object],
) -> dict[str, np.ndarray]:
    """The attacks on the whole update vector: backdoors' Neurotoxin mask and boost, PoisonedFL, adaptive.
    Remembers the model received in `state` (Neurotoxin and PoisonedFL need the last global change)."""
    base, honest = previous_vector(received), flat_delta(trained, received)
    kind = attack["kind"]
    if kind == "poisonedfl":
        return unflatten(base + poisonedfl_step(attack, base, honest, state), received)
    previous = state.get("previous")
    state["previous"] = base
    if kind == "adaptive":
        return unflatten(base + adaptive_step(attack, honest), received)
    delta = honest
    top = float(attack.get("neurotoxin", 0.0))
    if top > 0 and isinstance(previous, np.ndarray):
        delta = delta * neurotoxin_mask(base - previous, top)
    return unflatten(base + float(attack.get("boost", 1.0)) * delta, received)
