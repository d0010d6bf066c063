"""A model's canonical bytes and hash, the one form every party agrees on: the safetensors serialisation
of its named arrays (no metadata), and SHA-256 of exactly those bytes, the bytes32 committed on-chain.
Anyone can re-hash a blob and compare (`sha256sum model.safetensors`).

Why SHA-256 and not keccak-256 (Ethereum's own hash, which flchain used before issue 28): a blob's hash
is never computed on-chain, only stored and compared, while every party hashes every blob it sends or
receives. At 100M parameters that is about 4 GB hashed per round across a coordinator and 3 nodes.
In docs/hashing.md's run keccak-256 ran at 483 MB/s, SHA-256 (OpenSSL, with the CPU's SHA extensions) at
1,922 MB/s; earlier runs of bench/hash_speed.py under load gave 4x as well. Hashing was most of
the CPU flchain added at that size (docs/model-size.md). Everything else that is hashed (signatures,
Merkle leaves, task identity, rules documents) stays keccak-256, as the contracts compute it.

At real model sizes (10M-100M parameters, 40-400 MB) hashing is the cost flchain adds per byte, so the
hash and the store's writes take the canonical bytes as parts: safetensors' header (built here, byte for
byte what safetensors writes; tests/test_model_bytes.py holds it to that) followed by each array's own
buffer, in safetensors' order. No full copy of a model is made to hash or store it. hashlib releases the
GIL while it hashes, so several blobs hash in parallel threads (`hash_many`, `HashPool`)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fl_chain.errors import FlchainError


def canonical_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Deterministic serialisation of named arrays (safetensors, no metadata)."""
    return st_save({name: np.ascontiguousarray(value) for name, value in arrays.items()})


# safetensors orders tensors by dtype, largest first in its own enum order, then by name; these are the
# numpy dtypes whose tags and rank we reproduce (anything else takes safetensors' own serialisation).
_DTYPE_ORDER = ("BOOL", "U8", "I8", "I16", "U16", "F16", "I32", "U32", "F32", "F64", "I64", "U64")
_DTYPE_TAGS = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.int16): "I16",
    np.dtype(np.uint16): "U16",
    np.dtype(np.float16): "F16",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint32): "U32",
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
    np.dtype(np.int64): "I64",
    np.dtype(np.uint64): "U64",
}
_PLAIN_NAME = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


def _fast_path(arrays: Mapping[str, np.ndarray]) -> bool:
    """Whether the header can be built here: known little-endian dtypes and names JSON writes verbatim."""
    return all(
        np.asarray(value).dtype in _DTYPE_TAGS
        and np.asarray(value).dtype.byteorder in "=<|"
        and set(name) <= _PLAIN_NAME
        for name, value in arrays.items()
    )


def canonical_parts(arrays: Mapping[str, np.ndarray]) -> list[memoryview | bytes]:
    """The canonical bytes as parts whose concatenation is `canonical_bytes(arrays)`: the safetensors
    header, then each array's buffer (a view, not a copy, of a C-contiguous array)."""
    if not _fast_path(arrays):
        return [canonical_bytes(arrays)]
    values = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    rank = {tag: i for i, tag in enumerate(_DTYPE_ORDER)}
    order = sorted(values, key=lambda n: (-rank[_DTYPE_TAGS[values[n].dtype]], n))
    header, offset = {}, 0
    for name in order:
        value = values[name]
        header[name] = {
            "dtype": _DTYPE_TAGS[value.dtype],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + value.nbytes],
        }
        offset += value.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return [struct.pack("<Q", len(text)) + text, *(_buffer(values[name]) for name in order)]


def _buffer(value: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy (a 0-d array included)."""
    return memoryview(value.reshape(-1)).cast("B") if value.size else memoryview(b"")


def parts_size(parts: Sequence[memoryview | bytes]) -> int:
    """Length of the canonical bytes `parts` stand for."""
    return sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts)


def canonical_size(arrays: Mapping[str, np.ndarray]) -> int:
    """Length of the canonical bytes of `arrays` (only the header is built)."""
    return parts_size(canonical_parts(arrays))


def model_hash(blob: bytes) -> bytes:
    """The bytes32 model hash: SHA-256 of the canonical bytes."""
    return hashlib.sha256(blob).digest()


def hash_parts(parts: Sequence[memoryview | bytes]) -> bytes:
    """SHA-256 of the concatenation of `parts`, fed to the hash one part at a time."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def hash_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Model hash of named arrays, without serialising them into one blob."""
    return hash_parts(canonical_parts(arrays))


def hash_many(models: Sequence[Mapping[str, np.ndarray]]) -> list[bytes]:
    """Model hashes of several models (a round's updates), in parallel threads: hashlib releases the GIL."""
    if len(models) < 2:
        return [hash_arrays(m) for m in models]
    with ThreadPoolExecutor(max_workers=min(len(models), os.cpu_count() or 1)) as pool:
        return list(pool.map(hash_arrays, models))


class HashSpans:
    """Model hashes (hash_arrays) run from several threads, with when each ran: `seconds` is the time
    during which at least one was running (the union of their spans: hashes of replies that arrive
    seconds apart do not count the wait between them, hashes that overlap count once); `cpu_seconds`
    the CPU time the hashing threads spent in them (a span also counts the time a thread waited for a
    core the nodes or the other checks held)."""

    def __init__(self) -> None:
        self._spans: list[tuple[float, float]] = []
        self._cpu = 0.0
        self._lock = threading.Lock()  # hashes end in several threads

    def hash(self, arrays: Mapping[str, np.ndarray]) -> bytes:
        """hash_arrays(arrays), its span and CPU time noted."""
        started, cpu = time.monotonic(), time.thread_time()
        digest = hash_arrays(arrays)
        ended, cpu = time.monotonic(), time.thread_time() - cpu
        with self._lock:
            self._spans.append((started, ended))
            self._cpu += cpu
        return digest

    def seconds(self) -> float:
        """Seconds during which at least one hash was running (0 if none ran)."""
        with self._lock:
            return union_seconds(self._spans)

    def cpu_seconds(self) -> float:
        """CPU seconds the hashes took, summed over the threads that ran them (0 if none ran)."""
        with self._lock:
            return self._cpu


def union_seconds(spans: Iterable[tuple[float, float]]) -> float:
    """The length of the union of (start, end) spans: time covered by at least one of them."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


class HashPool:
    """Model hashes computed in background threads as the models arrive (a round's updates, hashed while
    the next replies are still being checked): `submit` returns the hash's future, `close` waits for
    all and returns the seconds spent hashing (HashSpans.seconds of `spans`, which other hashes of the
    round may share: coordinator/early_checks.py)."""

    def __init__(self, spans: HashSpans | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="flchain-hash")
        self.spans = spans if spans is not None else HashSpans()

    def submit(self, arrays: Mapping[str, np.ndarray]) -> Future[bytes]:
        """Start hashing `arrays` (hash_arrays) in a background thread."""
        return self._pool.submit(self.spans.hash, arrays)

    def close(self) -> float:
        """Wait for every hash submitted; the seconds spent hashing (0 if nothing was hashed)."""
        self._pool.shutdown(wait=True)
        return self.spans.seconds()


def require_model_hash(
    expected: bytes, arrays: Mapping[str, np.ndarray], task: int, round_number: int
) -> None:
    """Refuse arrays that are not the model committed for `round_number` of `task` (hash `expected`)."""
    require_same_model(expected, hash_arrays(arrays), task, round_number)


def require_same_model(expected: bytes, actual: bytes, task: int, round_number: int) -> None:
    """Refuse a model hashing to `actual` where round `round_number` of `task` committed `expected`."""
    if actual != expected:
        raise FlchainError(
            f"received model does not match round {round_number} of task {task} on-chain: "
            f"expected hash 0x{expected.hex()}, got 0x{actual.hex()}"
        )


def arrays_from_bytes(blob: bytes) -> dict[str, np.ndarray]:
    """Named arrays from canonical bytes."""
    return dict(st_load(blob))
