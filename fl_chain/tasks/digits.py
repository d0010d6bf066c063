"""The embedded default task: scikit-learn's 8x8 digits (bundled with scikit-learn, no download) and a
small MLP. 20 % of the samples are the server's test split, 10 % its validation split (for scoring);
clients share the remaining 70 %."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fl_chain.errors import FlchainError
from fl_chain.tasks.base import DataSpec, TaskSpec, load_xy_npz
from fl_chain.tasks.partition import partition_indices

SPLIT_SEED = 1234  # the train/validation/test split is fixed so every process agrees on it


def _dataset() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def _splits() -> dict[str, np.ndarray]:
    _, y = _dataset()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    n_test, n_val = int(0.2 * len(y)), int(0.1 * len(y))
    return {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}


def build_model(seed: int = 0) -> object:
    """64 -> 64 -> 10 MLP, initialised from `seed`."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def client_data(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """This client's partition of the training split, or its own file (--data)."""
    if spec.data_path is not None:
        return load_npz(spec.data_path)
    if not 0 <= spec.partition_id < spec.num_partitions:
        raise FlchainError(f"partition {spec.partition_id} is outside 0..{spec.num_partitions - 1}")
    x, y = _dataset()
    train = _splits()["train"]
    parts = partition_indices(y[train], spec.num_partitions, spec.partitioning, spec.alpha, seed=spec.seed)
    idx = train[parts[spec.partition_id]]
    return x[idx], y[idx]


def server_data(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The server's validation and test splits."""
    x, y = _dataset()
    splits = _splits()
    return (x[splits["val"]], y[splits["val"]]), (x[splits["test"]], y[splits["test"]])


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A participant's own digits data: an .npz file with arrays `x` (n, 64) and `y` (n,)."""
    return load_xy_npz(path, features=64)


def digits_task() -> TaskSpec:
    """The digits TaskSpec."""
    return TaskSpec("digits", build_model, client_data, server_data, load_npz)
