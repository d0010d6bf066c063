"""What a task provides: a model factory, each client's training data, the server's held-out data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl_chain.errors import FlchainError


@dataclass(frozen=True)
class DataSpec:
    """How a client's partition is chosen."""

    partition_id: int
    num_partitions: int
    partitioning: str = "iid"
    alpha: float = 0.5
    seed: int = 0
    data_path: Path | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A classification task on in-memory arrays.

    build_model(seed) returns a torch.nn.Module; client_data(spec) returns this client's (X, y);
    server_data(seed) returns ((X_val, y_val), (X_test, y_test)), data no client trains on;
    load_file(path) reads a participant's own (X, y) file (default: an .npz with arrays x and y).
    """

    name: str
    build_model: Callable[[int], object]
    client_data: Callable[[DataSpec], tuple[np.ndarray, np.ndarray]]
    server_data: Callable[[int], tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]
    load_file: Callable[[Path], tuple[np.ndarray, np.ndarray]] | None = None

    def read_file(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """A participant's own (X, y) from a file, with the task's reader or the default .npz one."""
        return (self.load_file or load_xy_npz)(path)


def load_xy_npz(path: Path, features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x float32, y int64) from an .npz file with arrays `x` (n, features) and `y` (n,)."""
    if not path.exists():
        raise FlchainError(f"data file {path} does not exist")
    try:
        with np.load(path) as data:
            x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    except (OSError, ValueError, KeyError) as exc:
        raise FlchainError(f"{path}: expected an .npz file with arrays 'x' and 'y' ({exc})") from None
    if x.ndim < 2 or len(x) != len(y) or (features is not None and (x.ndim != 2 or x.shape[1] != features)):
        expected = f"(n, {features})" if features is not None else "(n, ...)"
        raise FlchainError(
            f"{path}: 'x' must have shape {expected} and 'y' shape (n,), got {x.shape}, {y.shape}"
        )
    return x, y
