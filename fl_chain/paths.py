"""Where things live: the project's node tools, contract sources, and the per-user state directory."""

from __future__ import annotations

import os
from pathlib import Path

from fl_chain.errors import FlchainError

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """Directory holding `contracts/` and `node_modules/` (FLCHAIN_ROOT overrides)."""
    env = os.environ.get("FLCHAIN_ROOT")
    return Path(env).resolve() if env else PACKAGE_DIR.parent


def contracts_dir() -> Path:
    """Directory of the Solidity sources."""
    return project_root() / "contracts"


def node_modules() -> Path:
    """The pinned npm tools (`npm ci` puts them here)."""
    return project_root() / "node_modules"


def require_node_tool(relative: str, what: str) -> Path:
    """Path of a file inside node_modules, or a clear error telling the user to run `make setup`."""
    path = node_modules() / relative
    if not path.exists():
        raise FlchainError(f"{what} not found at {path}: run `make setup` (installs the pinned npm tools)")
    return path


def state_home(home: str | Path | None = None) -> Path:
    """The state directory: deployment file, chain PID file and logs (default ./.flchain)."""
    chosen = home or os.environ.get("FLCHAIN_HOME") or ".flchain"
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
