"""The model and data: a 30 -> 16 -> 2 network on scikit-learn's breast-cancer table (bundled with
scikit-learn, no download), features standardised. 25 % of the rows are the server's test split; nodes
split the rest."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def build_model() -> nn.Module:
    """The classifier."""
    return nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))


def _table() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = ((data.data - data.data.mean(0)) / data.data.std(0)).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(3).permutation(len(y))
    return x, y, {"test": order[: len(y) // 4], "nodes": order[len(y) // 4 :]}


def node_data(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """This node's rows."""
    x, y, splits = _table()
    mine = np.array_split(splits["nodes"], num_partitions)[partition_id]
    return x[mine], y[mine]


def test_data() -> tuple[np.ndarray, np.ndarray]:
    """The server's test rows."""
    x, y, splits = _table()
    return x[splits["test"]], y[splits["test"]]


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> float:
    """Full-batch gradient descent; returns the last loss."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    loss = torch.tensor(0.0)
    for _ in range(epochs * 10):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xs), ys)
        loss.backward()
        opt.step()
    return float(loss)


def test(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        return float(nn.functional.cross_entropy(logits, torch.from_numpy(y))), float(
            (logits.argmax(1).numpy() == y).mean()
        )
