"""Split sample indices among clients: IID, Dirichlet(alpha) over labels, or label shards.

flwr-datasets has these partitioners, but they operate on Hugging Face `datasets` objects (a large
dependency, and its loaders fetch from the Hub); for in-memory arrays these ~60 lines suffice.
"""

from __future__ import annotations

import numpy as np

from fl_chain.errors import FlchainError

PARTITIONINGS = ("iid", "dirichlet", "shards")


def partition_indices(
    labels: np.ndarray,
    num_partitions: int,
    method: str = "iid",
    alpha: float = 0.5,
    shards_per_partition: int = 2,
    seed: int = 0,
    min_size: int = 10,
) -> list[np.ndarray]:
    """Indices of each partition; deterministic for a given seed."""
    if num_partitions < 1:
        raise FlchainError(f"number of partitions must be >= 1, got {num_partitions}")
    if num_partitions * min_size > len(labels):
        raise FlchainError(f"{len(labels)} samples are too few for {num_partitions} partitions")
    rng = np.random.default_rng(seed)
    if method == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(len(labels)), num_partitions)]
    if method == "dirichlet":
        if alpha <= 0:
            raise FlchainError(f"Dirichlet alpha must be > 0, got {alpha}")
        return _dirichlet(labels, num_partitions, alpha, rng, min_size)
    if method == "shards":
        return _shards(labels, num_partitions, shards_per_partition, rng)
    raise FlchainError(f"unknown partitioning {method!r}: expected one of {', '.join(PARTITIONINGS)}")


def _dirichlet(
    labels: np.ndarray, n: int, alpha: float, rng: np.random.Generator, min_size: int
) -> list[np.ndarray]:
    classes = np.unique(labels)
    for _ in range(100):  # resample until every partition has min_size samples
        parts: list[list[int]] = [[] for _ in range(n)]
        for cls in classes:
            idx = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(shares) * len(idx)).astype(int)[:-1]
            for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise FlchainError(f"Dirichlet alpha={alpha} leaves a partition with < {min_size} samples; raise alpha")


def _shards(labels: np.ndarray, n: int, per: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, n * per)
    assignment = rng.permutation(len(shards))
    return [
        np.sort(np.concatenate([shards[s] for s in assignment[i * per : (i + 1) * per]])) for i in range(n)
    ]
