"""Misbehaviour of simulated clients, for experiments and tests. An attack turns the honestly trained
arrays into what a faulty or malicious node would send.

kinds: sign-flip (send global - scale*(update)), noise (Gaussian, std), free-rider (return the model
received), scale (boost the update by a factor), label-flip (train on flipped labels; applied to the
data by the ClientApp, the arrays pass unchanged), nan (poison one value), wrong-shape (drop a row).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fl_chain.errors import FlchainError

ATTACKS = ("sign-flip", "noise", "free-rider", "scale", "label-flip", "nan", "wrong-shape")


def apply_attack(
    attack: Mapping[str, object], received: Mapping[str, np.ndarray], trained: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The arrays a node with this attack sends, given what it received and what it trained."""
    kind = attack.get("kind") if attack else None
    if not kind:
        return dict(trained)
    seed = int(attack.get("seed", 0))
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, value in trained.items():
        base = received[name]
        delta = value - base
        if kind == "sign-flip":
            out[name] = (base - float(attack.get("scale", 1.0)) * delta).astype(value.dtype)
        elif kind == "noise":
            out[name] = (value + rng.normal(0, float(attack.get("std", 1.0)), value.shape)).astype(
                value.dtype
            )
        elif kind == "free-rider":
            out[name] = base.copy()
        elif kind == "scale":
            out[name] = (base + float(attack.get("scale", 10.0)) * delta).astype(value.dtype)
        elif kind in ("nan", "wrong-shape", "label-flip"):
            out[name] = value.copy()
        else:
            raise FlchainError(f"unknown attack {kind!r}: expected one of {', '.join(ATTACKS)}")
    first = next(iter(out))
    if kind == "nan":
        out[first].flat[0] = np.nan
    elif kind == "wrong-shape":
        out[first] = out[first][:-1]
    return out
