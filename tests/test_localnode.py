"""The chain launcher: real anvil/ganache processes, stopped by PID, with clear errors."""

from __future__ import annotations

import platform
import socket
import time
from pathlib import Path

import pytest

from fl_chain.chain.client import connect
from fl_chain.chain.setup.localnode import (
    anvil_binary,
    anvil_platform,
    free_port,
    ganache_command,
    start_chain,
)
from fl_chain.errors import FlchainError
from fl_chain.proctree import pid_alive, stop_pid


def test_two_chains_on_different_ports_then_both_stop(tmp_path: Path) -> None:
    a = start_chain("anvil", free_port(), tmp_path / "a.log")
    b = start_chain("anvil", free_port(), tmp_path / "b.log")
    try:
        assert a.port != b.port
        wa, wb = connect(a.rpc_url), connect(b.rpc_url)
        assert wa.eth.chain_id == wb.eth.chain_id == 31337
    finally:
        stop_pid(a.pid)
        stop_pid(b.pid)
    assert not pid_alive(a.pid) and not pid_alive(b.pid)


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(FlchainError, match=f"port {port} on 127.0.0.1 is already in use"):
            start_chain("anvil", port, tmp_path / "c.log")


@pytest.fixture()
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No checkout's node_modules, no tool variables, and a PATH with only an empty directory."""
    monkeypatch.setenv("FLCHAIN_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("FLCHAIN_ANVIL", raising=False)
    monkeypatch.delenv("FLCHAIN_GANACHE", raising=False)
    (tmp_path / "bin").mkdir()
    return tmp_path / "bin"


def test_missing_node_tools_name_the_npm_package(tmp_path: Path, no_tools: Path) -> None:
    for backend, package in (("anvil", "@foundry-rs/anvil"), ("ganache", "ganache")):
        with pytest.raises(FlchainError, match=rf"install the npm package {package} .* or run `make setup`"):
            start_chain(backend, free_port(), tmp_path / "d.log")


def test_tools_outside_a_checkout_come_from_path_or_the_variable(
    no_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("anvil", "ganache", "my-anvil"):
        (no_tools / name).write_text("#!/bin/sh\n")
        (no_tools / name).chmod(0o755)
    assert anvil_binary() == no_tools / "anvil"
    assert ganache_command() == [str(no_tools / "ganache")]
    monkeypatch.setenv("FLCHAIN_ANVIL", str(no_tools / "my-anvil"))  # the variable wins over PATH
    assert anvil_binary() == no_tools / "my-anvil"
    monkeypatch.setenv("FLCHAIN_GANACHE", str(no_tools / "absent"))
    with pytest.raises(FlchainError, match=r"FLCHAIN_GANACHE=.*absent: expected the path of the ganache"):
        ganache_command()


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("Linux", "x86_64", "linux-amd64"),
        ("Linux", "aarch64", "linux-arm64"),
        ("Darwin", "arm64", "darwin-arm64"),
        ("Darwin", "x86_64", "darwin-amd64"),
        ("Windows", "AMD64", "win32-amd64"),
    ],
)
def test_anvil_binary_is_the_platform_package_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_tools: Path, system: str, machine: str, expected: str
) -> None:
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert anvil_platform() == expected
    with pytest.raises(FlchainError, match=rf"anvil for {expected} not found .*run `make setup`"):
        anvil_binary()
    # What the @foundry-rs/anvil wrapper's postinstall downloads when the platform package is absent.
    name = "anvil.exe" if system == "Windows" else "anvil"
    fallback = tmp_path / "node_modules/@foundry-rs/anvil" / name
    fallback.parent.mkdir(parents=True)
    fallback.touch()
    assert anvil_binary() == fallback
    binary = tmp_path / f"node_modules/@foundry-rs/anvil-{expected}/bin/{name}"
    binary.parent.mkdir(parents=True)
    binary.touch()
    assert anvil_binary() == binary


def test_anvil_on_a_platform_without_a_build(monkeypatch: pytest.MonkeyPatch, no_tools: Path) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    with pytest.raises(FlchainError, match=r"anvil has no build for .*-riscv64.*need no local chain"):
        anvil_binary()


def test_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(FlchainError, match="unknown chain backend 'geth'"):
        start_chain("geth", free_port(), tmp_path / "e.log")


def test_block_time_mines_at_intervals(tmp_path: Path) -> None:
    chain = start_chain("anvil", free_port(), tmp_path / "f.log", block_time=0.5)
    try:
        w3 = connect(chain.rpc_url)
        first = w3.eth.block_number
        time.sleep(1.6)
        assert w3.eth.block_number >= first + 2
    finally:
        stop_pid(chain.pid)


def test_anvil_states_go_beside_its_log_and_are_removed(tmp_path: Path) -> None:
    """Anvil persists the states it no longer keeps in memory (after ~500 blocks) and leaves them behind
    even on a clean exit: flchain points them beside the log, removes them when it stops the chain, and
    removes those of a chain that was killed when the next one starts there."""
    import os
    import signal

    from fl_chain.chain.setup.localnode import states_dir

    killed = start_chain("anvil", free_port(), tmp_path / "chain.log")
    stopped = start_chain("anvil", free_port(), tmp_path / "chain.log")
    try:
        for chain in (killed, stopped):
            connect(chain.rpc_url).provider.make_request("anvil_mine", [hex(700)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            states_dir(tmp_path / "chain.log", killed.port).rglob("*")
        ):
            time.sleep(0.2)
        assert any(states_dir(tmp_path / "chain.log", killed.port).rglob("*"))  # persisted beside the log
        assert any(states_dir(tmp_path / "chain.log", stopped.port).rglob("*"))
        stopped.stop()
        assert not states_dir(tmp_path / "chain.log", stopped.port).exists()
        os.kill(killed.pid, signal.SIGKILL)  # no clean-up: its states stay until the next start
        deadline = time.monotonic() + 5
        while pid_alive(killed.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states_dir(tmp_path / "chain.log", killed.port).exists()
        following = start_chain("anvil", free_port(), tmp_path / "chain.log")
        following.stop()
        assert not states_dir(tmp_path / "chain.log", killed.port).exists()
    finally:
        stop_pid(killed.pid)
        stopped.stop()
