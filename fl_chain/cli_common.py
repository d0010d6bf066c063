"""Options and helpers shared by the `flchain` command groups."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from eth_account.signers.local import LocalAccount
from web3 import Web3

from fl_chain.chain.client import ChainClient, open_chain
from fl_chain.chain.deployment import DEPLOYMENT_FILE
from fl_chain.chain.identity import PASSWORD_ENV, resolve_account
from fl_chain.errors import FlchainError
from fl_chain.interrupts import clear_stop, request_stop
from fl_chain.paths import state_home
from fl_chain.views import console, err_console

__all__ = ["console", "err_console"]

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="State directory (deployment file, PID file, logs). Default ./.flchain"),
]
DeploymentOpt = Annotated[
    Path | None, typer.Option("--deployment", help="Deployment file. Default HOME/deployment.json")
]
RpcOpt = Annotated[str | None, typer.Option("--rpc", help="RPC URL; overrides the deployment's")]
KeyOpt = Annotated[Path | None, typer.Option("--key", help="Encrypted keystore of the acting account")]


def deployment_path(home: Path | None, deployment: Path | None) -> Path:
    """The deployment file to use: explicit path, else the state directory's."""
    return deployment if deployment else state_home(home) / DEPLOYMENT_FILE


def chain_from_options(home: Path | None, deployment: Path | None, rpc: str | None) -> ChainClient:
    """Open the chain a command works on, from the common options."""
    return open_chain(deployment_path(home, deployment), rpc)


def read_password(path: Path, confirm: bool = False) -> str:
    """Keystore password from FLCHAIN_KEY_PASSWORD, else a hidden prompt; never echoed or logged."""
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    return str(typer.prompt(f"Password for {path}", hide_input=True, confirmation_prompt=confirm))


def acting_account(client: ChainClient, key: Path | None, role: str) -> LocalAccount:
    """The account a write is sent from: --key (password from the environment or a prompt), else the
    local chain's development key for `role`."""
    if key is None and not client.deployment.dev_keys.get(role):
        raise FlchainError(f"this deployment has no local {role} key: pass --key with the {role}'s keystore")
    password = read_password(key) if key is not None else None
    return resolve_account(client.deployment.dev_keys, role, key, password)


def checksum(address: str, what: str = "address") -> str:
    """A checksummed address, or a one-line error for a malformed one."""
    if not Web3.is_address(address):
        raise FlchainError(f"{what} {address!r} is not an Ethereum address (expected 0x + 40 hex digits)")
    return Web3.to_checksum_address(address)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a long-running command like Ctrl-C does (its `finally` blocks stop what it started)."""

    def interrupt(signum: int, frame: object) -> None:
        request_stop()  # kept even if the exception below is dropped (interrupts.py says where)
        raise KeyboardInterrupt

    clear_stop()
    previous = signal.signal(signal.SIGTERM, interrupt)
    # Started in the background by a shell, SIGINT arrives ignored; Ctrl-C must still stop the command.
    previous_int = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
