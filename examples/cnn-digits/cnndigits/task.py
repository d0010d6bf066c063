"""The model and data: a two-layer CNN on scikit-learn's 8x8 digit images (bundled with scikit-learn, no
download). 20 % of the images are the server's test split, 10 % its root set; nodes split the rest."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

APP_ID = "cnndigits/1.0"  # part of the task's on-chain identity: the server and every node agree on it


class Net(nn.Module):
    """conv 3x3 (8) -> conv 3x3 (16) -> max-pool -> linear 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of (1, 8, 8) images."""
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def _images() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(7).permutation(len(y))
    n_test, n_root = len(y) // 5, len(y) // 10
    splits = {
        "test": order[:n_test],
        "root": order[n_test : n_test + n_root],
        "nodes": order[n_test + n_root :],
    }
    return x, y, splits


def node_data(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """This node's share of the images."""
    x, y, splits = _images()
    mine = np.array_split(splits["nodes"], num_partitions)[partition_id]
    return x[mine], y[mine]


def server_data(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The server's "root" (clean training data for the anchored defence) or "test" split."""
    x, y, splits = _images()
    return x[splits[split]], y[splits[split]]


def train(net: Net, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> float:
    """Plain SGD, batches of 32; returns the last epoch's mean loss."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    loss_sum = 0.0
    for _ in range(epochs):
        loss_sum, order = 0.0, torch.randperm(len(ys), generator=generator)
        for i in range(0, len(ys), 32):
            batch = order[i : i + 32]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xs[batch]), ys[batch])
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(batch)
    return loss_sum / max(1, len(ys))


def test(net: Net, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) on (x, y)."""
    with torch.no_grad():
        logits = net(torch.from_numpy(x))
        loss = float(nn.functional.cross_entropy(logits, torch.from_numpy(y)))
        return loss, float((logits.argmax(1).numpy() == y).mean())
