"""What a task provides: a model factory, each client's training data, the server's held-out data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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
    server_data(seed) returns ((X_val, y_val), (X_test, y_test)), data no client trains on.
    """

    name: str
    build_model: Callable[[int], object]
    client_data: Callable[[DataSpec], tuple[np.ndarray, np.ndarray]]
    server_data: Callable[[int], tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]
