"""Helpers for tests that run against a real local chain."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fl_chain.chain.client import ChainClient, connect
from fl_chain.chain.deploy import deploy_contracts, dev_account
from fl_chain.chain.localnode import ChainProcess, free_port, start_chain, stop_pid

SCALE = 1_000_000


@dataclass
class LocalChain:
    """A chain process plus a fresh deployment on it."""

    process: ChainProcess
    client: ChainClient
    admin: LocalAccount
    coordinator: LocalAccount

    def stop(self) -> None:
        stop_pid(self.process.pid)


def launch(backend: str, log_dir: Path) -> ChainProcess:
    """Start a chain on a free port."""
    return start_chain(backend, free_port(), log_dir / f"{backend}.log")


def fresh_deployment(process: ChainProcess) -> LocalChain:
    """Deploy the contracts anew onto a running chain."""
    w3 = connect(process.rpc_url)
    admin, coordinator = dev_account(0), dev_account(1)
    deployment = deploy_contracts(w3, admin, coordinator.address, process.rpc_url, process.backend)
    return LocalChain(process, ChainClient(w3, deployment), admin, coordinator)


def new_nodes(chain: LocalChain, count: int, approve: bool = True) -> list[LocalAccount]:
    """Funded, registered (and by default approved) node accounts, sorted by address."""
    client = chain.client
    nodes = [Account.from_key(secrets.token_bytes(32)) for _ in range(count)]
    nodes.sort(key=lambda a: int(a.address, 16))
    for node in nodes:
        client.fund(chain.admin, node.address, 10**18)
        client.transact(node, client.registry.functions.register((4, 8192, 100), ""))
        if approve:
            client.transact(chain.admin, client.registry.functions.approve(node.address))
    return nodes


def ema(old: int, score: int, alpha: int) -> int:
    """Python reference of Reputation's moving average (integer fixed point)."""
    return (old * (SCALE - alpha) + score * alpha) // SCALE


def home_with_deployment(chain: LocalChain, tmp_path: Path) -> Path:
    """A state directory holding the chain's deployment file, with the admin's dev key for CLI calls."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    deployment = chain.client.deployment
    deployment.dev_keys = {"admin": "0x" + chain.admin.key.hex().removeprefix("0x")}
    deployment.save(home / "deployment.json")
    return home
