"""A model's canonical bytes and hash, the one form every party agrees on: the safetensors serialisation
of its named arrays (no metadata), and keccak256 of exactly those bytes, the bytes32 committed on-chain.
Anyone can re-hash a blob and compare."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from eth_hash.auto import keccak
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fl_chain.errors import FlchainError


def canonical_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Deterministic serialisation of named arrays (safetensors, no metadata)."""
    return st_save({name: np.ascontiguousarray(value) for name, value in arrays.items()})


def model_hash(blob: bytes) -> bytes:
    """The bytes32 model hash: keccak256 of the canonical bytes."""
    return keccak(blob)


def hash_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Model hash of named arrays."""
    return model_hash(canonical_bytes(arrays))


def require_model_hash(
    expected: bytes, arrays: Mapping[str, np.ndarray], task: int, round_number: int
) -> None:
    """Refuse arrays that are not the model committed for `round_number` of `task` (hash `expected`)."""
    actual = hash_arrays(arrays)
    if actual != expected:
        raise FlchainError(
            f"received model does not match round {round_number} of task {task} on-chain: "
            f"expected hash 0x{expected.hex()}, got 0x{actual.hex()}"
        )


def arrays_from_bytes(blob: bytes) -> dict[str, np.ndarray]:
    """Named arrays from canonical bytes."""
    return dict(st_load(blob))
