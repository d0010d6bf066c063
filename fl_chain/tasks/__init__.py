"""Model + data definitions. The default task is scikit-learn's digits; user tasks load by
`module:attr`."""

from __future__ import annotations

import importlib

from fl_chain.errors import FlchainError
from fl_chain.extras import require_extra
from fl_chain.tasks.base import TaskSpec


def load_task(name: str) -> TaskSpec:
    """The task called `name`: "digits", or "package.module:attr" naming a TaskSpec (or a
    zero-argument callable returning one)."""
    if name == "digits":
        require_extra("demo", "the built-in digits task", ("torch", "sklearn"))
        from fl_chain.tasks.digits import digits_task

        return digits_task()
    if ":" not in name:
        raise FlchainError(f"unknown task {name!r}: expected 'digits' or 'module:attr'")
    obj = load_object(name, "task")
    spec = obj if isinstance(obj, TaskSpec) else obj() if callable(obj) else None
    if not isinstance(spec, TaskSpec):
        raise FlchainError(f"task {name!r}: expected a TaskSpec or a callable returning one")
    return spec


def load_object(name: str, what: str) -> object:
    """The object "package.module:attr" names, or a one-line error saying which part failed."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise FlchainError(f"{what} {name!r}: expected 'module:attr'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FlchainError(f"{what} {name!r}: cannot import {module_name} ({exc})") from None
    if not hasattr(module, attr):
        raise FlchainError(f"{what} {name!r}: module {module_name} has no attribute {attr!r}")
    return getattr(module, attr)
