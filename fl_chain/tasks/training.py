"""Local training and evaluation loops (torch), and conversion between models and named arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def get_arrays(model: object) -> dict[str, np.ndarray]:
    """The model's parameters as named numpy arrays (state_dict order)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_arrays(model: object, arrays: Mapping[str, np.ndarray]) -> None:
    """Load named numpy arrays into the model."""
    import torch

    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})


def train(
    model: object,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    proximal_mu: float = 0.0,
    steps: int | None = None,
) -> float:
    """SGD (momentum 0.9) for `epochs` over (x, y), or exactly `steps` mini-batches when given (local
    work sized to the node's capacity); returns the mean training loss of the last pass.

    With proximal_mu > 0 adds FedProx's proximal term mu/2 * ||w - w_global||^2.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    global_params = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else []
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    model.train()
    last = 0.0
    per_epoch = max(1, -(-len(xs) // batch_size))
    remaining = steps if steps is not None else max(1, epochs) * per_epoch
    while remaining > 0:
        order = torch.randperm(len(xs))
        total, count = 0.0, 0
        for start in range(0, len(xs), batch_size):
            if remaining <= 0:
                break
            remaining -= 1
            batch = order[start : start + batch_size]
            optimiser.zero_grad()
            loss = criterion(model(xs[batch]), ys[batch])
            if global_params:
                prox = sum(
                    ((p - g) ** 2).sum() for p, g in zip(model.parameters(), global_params, strict=True)
                )
                loss = loss + proximal_mu / 2 * prox
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
            count += len(batch)
        last = total / max(count, 1)
    return last


def evaluate(model: object, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of the model on (x, y)."""
    import torch
    from torch import nn

    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        loss = float(nn.CrossEntropyLoss()(logits, torch.from_numpy(y)))
        accuracy = float((logits.argmax(dim=1).numpy() == y).mean())
    return loss, accuracy
