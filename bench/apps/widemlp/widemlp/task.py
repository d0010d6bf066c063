"""The model and data: an MLP 32 -> H -> H -> 10 whose width H gives the run config's parameter count
(the H x H layer holds nearly all of it), trained one step on a small synthetic batch per round, so a
round's cost is the model's size, not its training."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

APP_ID = "widemlp/1.0"  # part of the task's on-chain identity: the server and every node agree on it
INPUTS, CLASSES, BATCH = 32, 10, 32


def width_for(params: int) -> int:
    """The hidden width H whose MLP has about `params` parameters: H^2 + (INPUTS + CLASSES + 2) H + 10."""
    b = INPUTS + CLASSES + 2
    return max(1, round((-b + math.sqrt(b * b + 4 * max(params - CLASSES, 1))) / 2))


class Net(nn.Sequential):
    """Linear(32, H) -> ReLU -> Linear(H, H) -> ReLU -> Linear(H, 10)."""

    def __init__(self, params: int) -> None:
        hidden = width_for(params)
        torch.manual_seed(0)
        super().__init__(
            nn.Linear(INPUTS, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, CLASSES),
        )


def node_batch(partition: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This node's synthetic batch (a fixed seed per partition)."""
    rng = np.random.default_rng(partition)
    x = rng.normal(size=(BATCH, INPUTS)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=BATCH)
    return torch.from_numpy(x), torch.from_numpy(y)


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> float:
    """One SGD step; the loss before it."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.functional.cross_entropy(net(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss)
