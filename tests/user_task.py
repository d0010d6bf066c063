"""A user task for tests: the digits task restricted to a fixed tiny model seed, loaded by module:attr."""

from __future__ import annotations

from fl_chain.tasks.base import TaskSpec
from fl_chain.tasks.digits import build_model, client_data, server_data

TASK = TaskSpec("tiny-digits", build_model, client_data, server_data)
NOT_A_TASK = 42
