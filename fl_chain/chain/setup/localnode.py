"""Start and stop a local Ethereum node (anvil or ganache) as a real subprocess, tracked by its PID."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from fl_chain import watchdog
from fl_chain.errors import FlchainError
from fl_chain.paths import node_modules
from fl_chain.proctree import cmdline, pid_alive, stop_pid

# Well-known development mnemonic (anvil's default); its keys are public, for local chains only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
BACKENDS = ("anvil", "ganache")
CHAIN_IDS = {"anvil": 31337, "ganache": 1337}
# Platforms @foundry-rs/anvil ships a binary for, as its per-platform packages name them.
ANVIL_PLATFORMS = ("linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64", "win32-amd64")
_SYSTEMS = {"linux": "linux", "darwin": "darwin", "windows": "win32"}
_MACHINES = {"x86_64": "amd64", "amd64": "amd64", "x64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# Where a user who has no checkout keeps the tools: a path in these variables, else the command on PATH.
TOOL_ENV = {"anvil": "FLCHAIN_ANVIL", "ganache": "FLCHAIN_GANACHE"}
NPM_PACKAGES = {"anvil": "@foundry-rs/anvil", "ganache": "ganache"}


@dataclass
class ChainProcess:
    """A running local chain: what was started, where it listens and how to stop it."""

    backend: str
    pid: int
    port: int
    host: str
    log: str
    # A chain other machines reach listens on loopback behind the RPC gate (rpc_gate.py), which
    # listens on public_host:public_port; gate_pid 0 means no gate (a loopback-only chain).
    gate_pid: int = 0
    public_host: str = ""
    public_port: int = 0

    @property
    def rpc_url(self) -> str:
        """HTTP JSON-RPC address of the node itself (loopback when it has a gate)."""
        return f"http://{self.host}:{self.port}"

    @property
    def public_url(self) -> str:
        """The address other programs use: the gate's when there is one, else the node's."""
        return f"http://{self.public_host}:{self.public_port}" if self.gate_pid else self.rpc_url

    def stop(self) -> None:
        """Stop the gate and the node by their PIDs, then remove the historical states anvil persisted
        beside its log."""
        if self.gate_pid and "rpc_gate" in cmdline(self.gate_pid):  # never a reused PID
            stop_pid(self.gate_pid)
        stop_pid(self.pid)
        if self.backend == "anvil" and not pid_alive(self.pid):
            shutil.rmtree(states_dir(Path(self.log), self.port), ignore_errors=True)


STATES_PID_FILE = "flchain-anvil.pid"  # which anvil a states directory belongs to


def states_dir(log_path: Path, port: int) -> Path:
    """Where anvil persists the historical states it no longer keeps in memory (`--cache-path`): beside
    its log, one directory per port. Anvil leaves them behind even on a clean exit (by default in
    ~/.foundry/anvil/tmp, 8.5 GB after one `make test` here), so `ChainProcess.stop` removes them and
    `start_chain` removes those of chains no longer running."""
    return log_path.parent / f"anvil-{port}.states"


def _remove_stale_states(log_dir: Path, host: str) -> None:
    """Remove the states directories beside a log whose anvil is gone (killed, not stopped): its PID,
    recorded in the directory at start, no longer runs anvil (or, without a record, its port is free)."""
    for directory in log_dir.glob("anvil-*.states"):
        record = directory / STATES_PID_FILE
        if record.is_file():
            text = record.read_text().strip()
            gone = not text.isdigit() or not pid_alive(int(text)) or "anvil" not in cmdline(int(text))
        else:
            port = directory.name.removeprefix("anvil-").removesuffix(".states")
            gone = port.isdigit() and not port_in_use(int(port), host)
        if gone:
            shutil.rmtree(directory, ignore_errors=True)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (for tests and parallel runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def anvil_platform() -> str:
    """This machine in @foundry-rs/anvil's package naming, e.g. linux-amd64 or darwin-arm64."""
    system, machine = platform.system().lower(), platform.machine().lower()
    return f"{_SYSTEMS.get(system, system)}-{_MACHINES.get(machine, machine)}"


def _explicit_tool(backend: str) -> Path | None:
    """The executable named by FLCHAIN_ANVIL / FLCHAIN_GANACHE, if set (an error if it is no executable)."""
    variable = TOOL_ENV[backend]
    value = os.environ.get(variable, "")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise FlchainError(f"{variable}={value}: expected the path of the {backend} executable")
    return path


def _on_path(backend: str) -> Path | None:
    """The tool as the user installed it (`npm install -g`, foundryup, a package manager), if on PATH."""
    found = shutil.which(backend)
    return Path(found) if found else None


def _not_found(backend: str, where: str) -> FlchainError:
    """The one-line error for a tool found nowhere, naming the npm package that provides it."""
    return FlchainError(
        f"{where} not found under {node_modules()}, in ${TOOL_ENV[backend]} or on PATH: install the npm "
        f"package {NPM_PACKAGES[backend]} (npm install -g {NPM_PACKAGES[backend]}) or run `make setup` in "
        "a checkout; nodes that only run `flchain client` need no local chain"
    )


def anvil_binary() -> Path:
    """The anvil executable: $FLCHAIN_ANVIL if set; else the repository's pinned npm package for this
    platform (or the one the @foundry-rs/anvil wrapper downloaded itself), never the wrapper script,
    which would run anvil as a child of node; else `anvil` on PATH."""
    explicit = _explicit_tool("anvil")
    if explicit is not None:
        return explicit
    target = anvil_platform()
    name = "anvil.exe" if target.startswith("win32-") else "anvil"
    modules = node_modules()
    for path in (modules / f"@foundry-rs/anvil-{target}/bin/{name}", modules / f"@foundry-rs/anvil/{name}"):
        if path.is_file():
            return path
    on_path = _on_path("anvil")
    if on_path is not None:
        return on_path
    if target not in ANVIL_PLATFORMS:
        raise FlchainError(
            f"anvil has no build for {target} (only {', '.join(ANVIL_PLATFORMS)}): use --backend ganache "
            "or an existing node; nodes that only run `flchain client` need no local chain"
        )
    raise _not_found("anvil", f"anvil for {target}")


def ganache_command() -> list[str]:
    """How to run ganache: $FLCHAIN_GANACHE if set; else node on the repository's pinned package's
    cli.js (so the PID held is the chain itself); else `ganache` on PATH."""
    explicit = _explicit_tool("ganache")
    if explicit is not None:
        return [str(explicit)]
    cli = node_modules() / "ganache/dist/node/cli.js"
    if cli.is_file():
        return ["node", str(cli)]
    on_path = _on_path("ganache")
    if on_path is not None:
        return [str(on_path)]  # its `#!/usr/bin/env node` execs node in place: the PID is still the chain
    raise _not_found("ganache", "ganache")


def _command(
    backend: str,
    host: str,
    port: int,
    block_time: float | None,
    accounts: int,
    state: Path | None = None,
    states: Path | None = None,
) -> list[str]:
    if backend == "anvil":
        # Spawn the platform binary directly so the PID we hold is anvil itself.
        cmd = [str(anvil_binary()), "--host", host, "--port", str(port), "--mnemonic", DEV_MNEMONIC]
        cmd += ["--accounts", str(accounts), "--chain-id", str(CHAIN_IDS["anvil"])]
        if states is not None:
            cmd += ["--cache-path", str(states)]
        if block_time:
            cmd += ["--block-time", str(block_time)]
        if state is not None:  # loaded at start if present, written (blocks and logs too) when stopped;
            # with the historical states `flchain audit` can still read old blocks after a restart
            cmd += ["--state", str(state), "--preserve-historical-states"]
        return cmd
    if state is not None:
        raise FlchainError(f"--state: only anvil keeps its chain across restarts here, not {backend}")
    if backend == "ganache":
        cmd = [*ganache_command(), "--server.host", host, "--server.port", str(port)]
        cmd += ["--wallet.mnemonic", DEV_MNEMONIC, "--wallet.totalAccounts", str(accounts)]
        cmd += ["--chain.chainId", str(CHAIN_IDS["ganache"]), "--logging.quiet"]
        if block_time:
            cmd += ["--miner.blockTime", str(block_time)]
        return cmd
    raise FlchainError(f"unknown chain backend {backend!r}: expected one of {', '.join(BACKENDS)}")


def wait_for_rpc(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> int:
    """Wait until the node at `url` answers eth_chainId; return the chain id."""
    deadline = time.monotonic() + timeout
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise FlchainError(f"the chain node exited at start-up with code {proc.returncode}")
        with contextlib.suppress(requests.RequestException, ValueError, KeyError):
            reply = requests.post(url, json=payload, timeout=1.0)
            return int(reply.json()["result"], 16)
        time.sleep(0.05)
    raise FlchainError(f"the chain node at {url} did not answer within {timeout:.0f} s")


def start_chain(
    backend: str,
    port: int,
    log_path: Path,
    host: str = "127.0.0.1",
    block_time: float | None = None,
    accounts: int = 20,
    detach: bool = False,
    state: Path | None = None,
) -> ChainProcess:
    """Start a local node and wait until it answers; raise FlchainError if the port is taken. With
    `state` (anvil) the chain is loaded from that file if it exists and written back when stopped."""
    if backend not in BACKENDS:
        raise FlchainError(f"unknown chain backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if port_in_use(port, host):
        raise FlchainError(f"port {port} on {host} is already in use: choose another with --port")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if backend == "anvil":
        _remove_stale_states(log_path.parent, host)
    cmd = _command(backend, host, port, block_time, accounts, state, states_dir(log_path, port))
    with open(log_path, "ab") as log:
        # A detached chain gets its own session so the shell's Ctrl-C does not reach it.
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
        )
    if not detach:  # a detached chain is meant to outlive this command (`flchain chain down` stops it)
        watchdog.watch(proc.pid)
    if backend == "anvil":
        states = states_dir(log_path, port)
        states.mkdir(exist_ok=True)
        (states / STATES_PID_FILE).write_text(str(proc.pid))
    chain = ChainProcess(backend, proc.pid, port, host, str(log_path))
    try:
        wait_for_rpc(chain.rpc_url, proc=proc)
    except BaseException:
        chain.stop()
        raise
    return chain


def write_pidfile(path: Path, chain: ChainProcess) -> None:
    """Record a detached chain so `flchain chain down` can stop it by PID."""
    path.write_text(json.dumps(asdict(chain), indent=2))


def read_pidfile(path: Path) -> ChainProcess | None:
    """The chain recorded in a PID file, or None if there is none or it is no longer running."""
    if not path.exists():
        return None
    try:
        chain = ChainProcess(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise FlchainError(f"{path}: not a chain PID file ({exc})") from None
    if not pid_alive(chain.pid) or (
        chain.backend not in cmdline(chain.pid) and "cli.js" not in cmdline(chain.pid)
    ):
        return None
    return chain
