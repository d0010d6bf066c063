"""A task's identity on-chain: what every node must agree on before it trains. The task's `configHash`
is the keccak of a canonical JSON of the model's architecture (each array's name, shape and dtype, in
name order) and the app's id (e.g. "myapp/1.0"; "" when the app does not name itself). Weights are not
part of it: they change every round and have their own per-round hash."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from eth_hash.auto import keccak

from fl_chain.errors import FlchainError


def architecture(arrays: Mapping[str, np.ndarray]) -> list[list]:
    """[name, shape, dtype] of every array, sorted by name."""
    return [
        [name, list(np.shape(arrays[name])), str(np.asarray(arrays[name]).dtype)] for name in sorted(arrays)
    ]


def task_app_id(task: str) -> str:
    """The app id of flchain's own ServerApp and ClientApp for one of its tasks ("digits", "module:attr")."""
    return f"flchain/{task}"


def identity_hash(arrays: Mapping[str, np.ndarray], app: str = "") -> bytes:
    """The bytes32 configHash of a task whose model has these arrays and whose app is `app`."""
    text = json.dumps({"app": app, "arrays": architecture(arrays)}, separators=(",", ":"))
    return keccak(text.encode())


def require_identity(expected: bytes, arrays: Mapping[str, np.ndarray], app: str, what: str) -> None:
    """A one-line error naming both hashes when `arrays` (and `app`) are not the task's."""
    actual = identity_hash(arrays, app)
    if actual != expected:
        shapes = ", ".join(f"{n} {tuple(s)} {d}" for n, s, d in architecture(arrays)[:4])
        more = "" if len(arrays) <= 4 else f", ... ({len(arrays)} arrays)"
        raise FlchainError(
            f"{what} does not match the task: on-chain configHash 0x{expected.hex()}, this node's "
            f"0x{actual.hex()} (app {app!r}; {shapes}{more})"
        )
