"""A short local benchmark of training throughput, reported to the registry when a node applies."""

from __future__ import annotations

import time

from fl_chain.extras import require_extra


def measure_samples_per_sec(seconds: float = 1.0, batch_size: int = 32) -> int:
    """Samples per second of SGD on the default digits model with random data, for ~`seconds`."""
    require_extra("demo", "measuring training throughput (or pass --samples-per-sec)", ("torch",))
    import numpy as np
    import torch

    from fl_chain.tasks.digits import build_model
    from fl_chain.tasks.training import train

    torch.set_num_threads(1)  # one training process per core is what a node runs
    rng = np.random.default_rng(0)
    x = rng.random((batch_size * 8, 64), dtype=np.float32)
    y = rng.integers(0, 10, len(x)).astype(np.int64)
    model = build_model(0)
    train(model, x, y, epochs=1, lr=0.01, batch_size=batch_size, seed=0)  # warm-up
    samples, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        train(model, x, y, epochs=1, lr=0.01, batch_size=batch_size, seed=0)
        samples += len(x)
    return int(samples / (time.perf_counter() - started))
