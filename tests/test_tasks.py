"""Task loading (built-in and `module:attr`) and the digits data splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.errors import FlchainError
from fl_chain.tasks import load_task
from fl_chain.tasks.base import DataSpec


def test_user_task_by_module_attr() -> None:
    assert load_task("tests.user_task:TASK").name == "tiny-digits"
    for name, message in (
        ("tests.user_task:MISSING", "has no attribute 'MISSING'"),
        ("tests.user_task:NOT_A_TASK", "expected a TaskSpec"),
        ("no_such_module:x", "cannot import no_such_module"),
        ("mnist", "unknown task 'mnist'"),
    ):
        with pytest.raises(FlchainError, match=message):
            load_task(name)


def test_digits_clients_share_only_the_training_split(tmp_path: Path) -> None:
    task = load_task("digits")
    (xv, yv), (xt, yt) = task.server_data(0)
    parts = [task.client_data(DataSpec(i, 3)) for i in range(3)]
    client_rows = {row.tobytes() for x, _ in parts for row in x}
    assert sum(len(y) for _, y in parts) + len(yv) + len(yt) == 1797
    # No client sample is one of the server's held-out samples (digits has a few exact duplicates).
    held_out = {row.tobytes() for row in np.concatenate([xv, xt])}
    assert len(client_rows & held_out) <= 5
    own = tmp_path / "own.npz"
    np.savez(own, x=parts[0][0][:20], y=parts[0][1][:20])
    x, y = task.client_data(DataSpec(0, 1, data_path=own))
    assert x.shape == (20, 64) and y.shape == (20,)
    np.savez(own, x=np.zeros((3, 5)), y=np.zeros(3))
    with pytest.raises(FlchainError, match="must have shape"):
        task.client_data(DataSpec(0, 1, data_path=own))
