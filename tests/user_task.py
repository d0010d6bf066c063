"""A user task for tests, loaded by module:attr: the digits data with a smaller model (32 hidden units),
so a node that trained the default digits task instead would send arrays of the wrong shape."""

from __future__ import annotations

from fl_chain.tasks.base import TaskSpec
from fl_chain.tasks.digits import client_data, load_npz, server_data


def build_model(seed: int = 0) -> object:
    """64 -> 32 -> 10 MLP."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


TASK = TaskSpec("tiny-digits", build_model, client_data, server_data, load_npz)
NOT_A_TASK = 42
