"""The optional parts of flchain and the extra that installs each: a node's install is the light core
(the mod, ChainStrategy, the chain and node commands); torch, scikit-learn, matplotlib, ray, starlette
and uvicorn come with `flchain[demo]` or `flchain[dashboard]`, s3fs with `flchain[s3]`."""

from __future__ import annotations

import importlib.util

from fl_chain.errors import FlchainError

# What each extra brings, by import name (pyproject.toml lists the distributions).
EXTRAS = {
    "demo": ("torch", "sklearn", "matplotlib", "ray"),
    "dashboard": ("starlette", "uvicorn"),
    "s3": ("s3fs",),
}


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules of `modules` that this environment cannot import."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_extra(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise a one-line error naming the extra to install if `what` cannot run here for lack of it."""
    missing = missing_modules(modules if modules is not None else EXTRAS[extra])
    if missing:
        raise FlchainError(
            f"{what} needs {', '.join(missing)}, not installed here: pip install 'flchain[{extra}]'"
        )
