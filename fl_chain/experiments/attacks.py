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
`after` rounds, then run the attack in `then`). Coordinated attacks that need every participant's update,
ALIE and IPM, live in experiments/collusion.py.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fl_chain.errors import FlchainError

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
    "alie",
    "ipm",
)
COORDINATED = ("alie", "ipm")  # applied by experiments/collusion.py, the client trains honestly


def active_attack(attack: Mapping[str, object], round_number: int) -> Mapping[str, object]:
    """The attack a node runs in this round (on-off attackers behave until round `after`)."""
    if attack.get("kind") == "on-off":
        return dict(attack.get("then", {})) if round_number > int(attack.get("after", 3)) else {}
    return attack


def apply_attack(
    attack: Mapping[str, object],
    received: Mapping[str, np.ndarray],
    trained: Mapping[str, np.ndarray],
    round_number: int = 1,
) -> dict[str, np.ndarray]:
    """The arrays a node with this attack sends in this round, given what it received and trained."""
    attack = active_attack(attack or {}, round_number)
    kind = attack.get("kind") if attack else None
    if not kind or kind in COORDINATED:
        return dict(trained)
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
        elif kind in ("nan", "wrong-shape", "label-flip", "lie-examples", "unsigned"):
            out[name] = value.copy()
        else:
            raise FlchainError(f"unknown attack {kind!r}: expected one of {', '.join(ATTACKS)}")
    first = next(iter(out))
    if kind == "nan":
        out[first].flat[0] = np.nan
    elif kind == "wrong-shape":
        out[first] = out[first][:-1]
    return out
