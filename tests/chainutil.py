"""Helpers for tests that run against a real local chain (thin wrappers over chain/setup/bootstrap.py)."""

from __future__ import annotations

from pathlib import Path

from eth_account.signers.local import LocalAccount

from fl_chain.chain.registry import Capacity
from fl_chain.chain.setup import bootstrap
from fl_chain.chain.setup.bootstrap import LocalDeployment
from fl_chain.chain.setup.localnode import ChainProcess, free_port, start_chain
from fl_chain.protocol.fixedpoint import SCALE

LocalChain = LocalDeployment  # a chain process plus a fresh deployment on it
TEST_CAPACITY = Capacity(4, 8192, 100)


def launch(backend: str, log_dir: Path) -> ChainProcess:
    """Start a chain on a free port."""
    return start_chain(backend, free_port(), log_dir / f"{backend}.log")


def fresh_deployment(process: ChainProcess) -> LocalChain:
    """Deploy the contracts anew onto a running chain."""
    return bootstrap.deploy_local(process)


def new_nodes(chain: LocalChain, count: int, approve: bool = True) -> list[LocalAccount]:
    """Funded, registered (and by default approved) node accounts, sorted by address."""
    return bootstrap.register_nodes(chain.client, count, approve, TEST_CAPACITY, funds=10**18)


def ema(old: int, score: int, alpha: int) -> int:
    """Python reference of Reputation's moving average (integer fixed point)."""
    return (old * (SCALE - alpha) + score * alpha) // SCALE


def home_with_deployment(chain: LocalChain, tmp_path: Path) -> Path:
    """A state directory holding the chain's deployment file (with its development keys) for CLI calls."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    chain.client.deployment.save(home / "deployment.json")
    return home
