"""Flower's Deployment Engine processes (SuperLink, SuperNode, `flwr run`), each started in its own
process group and stopped by its PID (the group takes the SuperExec and app processes with it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fl_chain import watchdog
from fl_chain.chain.identity import DECRYPTED_KEY_ENV, PASSWORD_ENV
from fl_chain.chain.setup.localnode import free_port
from fl_chain.errors import FlchainError
from fl_chain.netaddr import is_loopback
from fl_chain.proctree import stop_tree

# What opens a node's key: never inherited by a SuperNode of `flchain client` or the app processes it runs
# (the coordinator ships their code). Given explicitly (a plain flower-supernode), it is the user's choice.
SECRET_ENV = (PASSWORD_ENV, DECRYPTED_KEY_ENV)

CERT_FILES = ("ca.crt", "server.pem", "server.key")
APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "flchain-app"
version = "1.0.0"
description = "flchain ServerApp and ClientApp (code comes from the installed fl_chain package)"
dependencies = []

[tool.flwr.app]
publisher = "flchain"

[tool.flwr.app.components]
serverapp = "fl_chain.coordinator.server_app:app"
clientapp = "fl_chain.node.client_app:app"

[tool.flwr.app.config]
flchain-run = ""
"""


@dataclass
class Managed:
    """A started process group."""

    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        """PID of the group leader."""
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the group and every descendant by PID, also those that left the group (Flower starts
        SuperExec in a session of its own): SIGTERM, SIGKILL after `timeout` (proctree.stop_tree)."""
        stop_tree(self.proc.pid, timeout, kill_timeout=5.0, group=True)
        self.proc.poll()  # stop_tree reaped the leader: its Popen learns it has ended
        watchdog.forget(self.proc.pid)


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FlchainError(f"{name} not found next to {sys.executable}: run `make setup`")
    return str(path)


def child_environment(env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment without `drop`, with this Python's bin directory first on PATH (Flower's
    launchers find flower-superexec and the app runners there), and `env` on top."""
    inherited = {k: v for k, v in os.environ.items() if k not in drop}
    inherited["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**inherited, **(env or {})}


def spawn(
    name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()
) -> Managed:
    """Start a command in a new process group with output to a log file (`env` added to this process's
    environment, `drop` left out of it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_environment(env, drop),
            start_new_session=True,
        )
    watchdog.watch(proc.pid)  # stopped with its tree even if this process is SIGKILLed
    return Managed(name, proc, log)


def check_certificates(directory: Path) -> dict[str, Path]:
    """The three TLS files of a certificates directory, or a one-line error naming the missing one."""
    if not directory.is_dir():
        raise FlchainError(f"--certificates {directory}: not a directory")
    files = {name: directory / name for name in CERT_FILES}
    for name, path in files.items():
        if not path.is_file():
            raise FlchainError(
                f"--certificates {directory}: missing {name} (expected {', '.join(CERT_FILES)})"
            )
    return files


def wait_port(host: str, port: int, proc: Managed, timeout: float = 60.0) -> None:
    """Wait until something accepts TCP connections on host:port, or the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            tail = proc.log.read_text(errors="replace").strip().splitlines()[-1:] if proc.log.exists() else []
            raise FlchainError(
                f"{proc.name} exited at start-up ({' '.join(tail) or 'no output'}); see {proc.log}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise FlchainError(f"{proc.name} did not listen on {host}:{port} within {timeout:.0f} s; see {proc.log}")


@dataclass
class SuperLink:
    """A running SuperLink and, on a non-loopback address, the Fleet proxy in front of it
    (runners/fleet_proxy.py). `local` is where its Control and ServerAppIo APIs answer: loopback when
    proxied (then plain HTTP: `local_certificates` is None), else the SuperLink's own address."""

    process: Managed
    local: str
    local_certificates: Path | None
    proxy: Managed | None = None

    @property
    def pid(self) -> int:
        """PID of the SuperLink (its SuperExec and ServerApp processes are its descendants)."""
        return self.process.pid

    @property
    def proc(self) -> subprocess.Popen:
        """The SuperLink's Popen."""
        return self.process.proc

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the proxy (nodes lose their way in first), then the SuperLink and its descendants."""
        if self.proxy is not None:
            self.proxy.stop(timeout)
        self.process.stop(timeout)


def start_superlink(
    host: str, port: int, log: Path, certificates: Path | None, env: dict[str, str] | None = None
) -> SuperLink:
    """A SuperLink for nodes at `host:port`. Flower 1.42 serves the Fleet, Control and ServerAppIo APIs
    from one HTTP port, so on a loopback `host` that is the SuperLink's own; on any other address the
    SuperLink listens on a free loopback port and nginx passes only the Fleet API from `host:port`
    (runners/fleet_proxy.py): nobody on the network can submit a run. `env` reaches the ServerApp
    processes it starts; no secret of this process (SECRET_ENV) does."""
    from fl_chain.runners.fleet_proxy import nginx_binary, start_fleet_proxy  # it builds on this module

    if is_loopback(host):
        return SuperLink(_superlink(host, port, log, certificates, env), f"{host}:{port}", certificates)
    nginx_binary()  # fail before anything starts
    inner = free_port()
    link = _superlink("127.0.0.1", inner, log, None, env)
    try:
        proxy = start_fleet_proxy(host, port, inner, log.with_name("fleet-proxy.log"), certificates)
    except BaseException:
        link.stop()
        raise
    return SuperLink(link, f"127.0.0.1:{inner}", None, proxy)


def _superlink(
    host: str, port: int, log: Path, certificates: Path | None, env: dict[str, str] | None
) -> Managed:
    """The flower-superlink process itself, listening on host:port."""
    cmd = [
        _bin("flower-superlink"),
        "--host",
        host,
        "--port",
        str(port),
        "--disable-runtime-dependency-installation",
    ]
    if certificates:
        files = check_certificates(certificates)
        cmd += ["--ssl-ca-certfile", str(files["ca.crt"]), "--ssl-certfile", str(files["server.pem"])]
        cmd += ["--ssl-keyfile", str(files["server.key"])]
    else:
        cmd += ["--insecure"]
    link = spawn("SuperLink", cmd, log, env, drop=SECRET_ENV)
    try:
        wait_port(host, port, link)
    except BaseException:
        link.stop()
        raise
    return link


def start_simulation_superlink(port: int, log: Path, env: dict[str, str] | None = None) -> Managed:
    """A loopback SuperLink running the Simulation Engine (`flwr run ... --federation-config
    "num-supernodes=N"` decides how many simulated nodes a run gets)."""
    cmd = [
        _bin("flower-superlink"),
        "--insecure",
        "--simulation",
        "--disable-runtime-dependency-installation",
    ]
    link = spawn("SuperLink", [*cmd, "--host", "127.0.0.1", "--port", str(port)], log, env)
    try:
        wait_port("127.0.0.1", port, link)
    except BaseException:
        link.stop()
        raise
    return link


def start_supernode(
    superlink: str,
    port: int,
    node_config: dict[str, str | int | float],
    log: Path,
    root_certificates: Path | None,
    env: dict[str, str] | None = None,
    isolation: str = "subprocess",
) -> Managed:
    """A SuperNode connected to `superlink` (host:port) with this node's config, its Runtime API on
    127.0.0.1:`port`. It inherits no secret of this process (SECRET_ENV), only what `env` gives it. With
    `isolation="process"` it starts no app process itself: `flchain client` does (runners/app_launcher.py)."""
    cmd = [_bin("flower-supernode"), "--superlink", superlink, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--node-config", format_node_config(node_config), "--isolation", isolation]
    cmd += ["--root-certificates", str(root_certificates)] if root_certificates else ["--insecure"]
    return spawn("SuperNode", cmd, log, env, drop=SECRET_ENV)


def format_node_config(values: dict[str, str | int | float]) -> str:
    """Flower's `k=v k2='string'` node-config syntax."""
    parts = []
    for key, value in values.items():
        if isinstance(value, str):
            if "'" in value or "\n" in value:
                raise FlchainError(
                    f"node config value for {key!r} may not contain quotes or newlines: {value!r}"
                )
            parts.append(f"{key}='{value}'")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def prepare_app(run_dir: Path, address: str, certificates: Path | None) -> tuple[Path, Path]:
    """The Flower App directory and a FLWR_HOME whose default connection is this SuperLink."""
    app_dir = run_dir / "app"
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "pyproject.toml").write_text(APP_PYPROJECT)
    return app_dir, write_flwr_home(run_dir / "flwr-home", address, certificates)


def write_flwr_home(flwr_home: Path, address: str, certificates: Path | None = None) -> Path:
    """A FLWR_HOME whose default connection, named "flchain", is the SuperLink at `address`."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    security = f'root-certificates = "{certificates / "ca.crt"}"' if certificates else "insecure = true"
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "flchain"\n\n[superlink.flchain]\naddress = "{address}"\n{security}\n'
    )
    return flwr_home


def submit_run(app_dir: Path, flwr_home: Path, run_file: Path | None, log: Path) -> Managed:
    """`flwr run` the app against the prepared connection, streaming the ServerApp's logs to `log`;
    `run_file` (flchain's own app) travels in the run config."""
    cmd = [_bin("flwr"), "run", str(app_dir), "flchain", "--stream"]
    if run_file is not None:
        cmd += ["--run-config", f"flchain-run='{run_file}'"]
    return spawn("flwr run", cmd, log, {"FLWR_HOME": str(flwr_home)}, drop=SECRET_ENV)


def check_app_dir(app: Path) -> None:
    """A one-line error unless `app` is a Flower App directory (pyproject.toml with [tool.flwr.app])."""
    import tomllib

    pyproject = app / "pyproject.toml"
    if not pyproject.is_file():
        raise FlchainError(f"--app {app}: no pyproject.toml (expected a Flower App directory)")
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FlchainError(f"{pyproject}: not valid TOML ({exc})") from None
    components = data.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    for name in ("serverapp", "clientapp"):
        if not components.get(name):
            raise FlchainError(f"{pyproject}: field 'tool.flwr.app.components.{name}' is missing")
