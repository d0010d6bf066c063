"""Only the coordinator can submit runs (issue 23, point 2), with real Flower processes.

Flower 1.42's SuperLink serves its Fleet, Control and ServerAppIo APIs from one port and has no account
authentication outside Flower Enterprise: on a non-loopback address flchain runs it on loopback behind
nginx, which passes only the Fleet API (runners/fleet_proxy.py). An attacker's `flwr run` of their own app
against the public address is refused and nothing of theirs runs, while a SuperNode still joins through
that address. And the coordinator's keystore password is in no environment of the processes that run
apps (SuperLink, SuperExec, ServerApp): the ServerApp reads it once from a 0600 file and deletes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from fl_chain.chain.setup.localnode import free_port
from fl_chain.runners.processes import start_superlink, start_supernode, write_flwr_home
from tests.test_e2e_deployment import _run, _spawn, stop_commands

FLWR = str(Path(sys.executable).parent / "flwr")
EVIL_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "not-the-coordinators-app"
version = "1.0.0"
description = "an app someone on the network wants the coordinator's machine to run"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "mallory"

[tool.flwr.app.components]
serverapp = "evil:app"
clientapp = "evil:client"

[tool.flwr.app.config]
"""
EVIL_APP = """from pathlib import Path

Path({marker!r}).write_text(str(dict(__import__("os").environ)))  # runs wherever the ServerApp runs
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

app = ServerApp()
client = ClientApp()
"""


def _flwr(args: list[str], flwr_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLWR_HOME": str(flwr_home)}
    return subprocess.run([FLWR, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.timeout(180)
def test_a_second_flwr_run_on_the_public_address_is_refused(tmp_path: Path) -> None:
    """A SuperLink started for nodes on 0.0.0.0 (as `flchain server --host 0.0.0.0` does). Someone who
    reaches that address submits their own app with `flwr run`: refused (403), no run exists, their code
    never runs. A SuperNode joins through the same address. Before: the run was accepted and the app's
    module executed on the coordinator's machine, reading its environment."""
    marker = tmp_path / "evil-ran"
    app = tmp_path / "evil"
    app.mkdir()
    (app / "pyproject.toml").write_text(EVIL_PYPROJECT)
    (app / "evil.py").write_text(EVIL_APP.format(marker=str(marker)))
    port = free_port()
    link = start_superlink("0.0.0.0", port, tmp_path / "superlink.log", None)
    node = None
    try:
        attacker = write_flwr_home(tmp_path / "attacker-home", f"127.0.0.1:{port}")
        submitted = _flwr(["run", str(app), "flchain"], attacker)
        node = start_supernode(f"127.0.0.1:{port}", free_port(), {}, tmp_path / "node.log", None)
        time.sleep(8)  # time for a ServerApp to start and import the app, had the run been accepted
        local = write_flwr_home(tmp_path / "coordinator-home", link.local, link.local_certificates)
        listed = _flwr(["ls", "flchain", "--format", "json"], local)
        node_log = (tmp_path / "node.log").read_text()
    finally:
        if node is not None:
            node.stop()
        link.stop()
    assert submitted.returncode != 0 and "403" in submitted.stderr + submitted.stdout, submitted
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout[listed.stdout.index("{") :])["runs"] == []
    assert not marker.exists()
    assert "SuperNode ID:" in node_log, node_log  # the Fleet API is reachable on the public address


@pytest.mark.timeout(240)
def test_the_serverapp_environment_holds_no_password(tmp_path: Path) -> None:
    """`flchain server` with a coordinator keystore, its password in FLCHAIN_KEY_PASSWORD. Once the
    ServerApp has committed round 0 (it decrypted the key), no process below the server (SuperLink,
    SuperExec, ServerApp) has the password in its environment or command line, and the file it was
    handed in is gone. Before: it was in the ServerApp's environment, for any app to read."""
    from eth_account import Account

    from fl_chain.chain.client import open_chain

    home = tmp_path / "home"
    password = f"coordinator-secret-{uuid.uuid4().hex}"
    env = {**os.environ, "FLCHAIN_KEY_PASSWORD": password, "PYTHONUNBUFFERED": "1"}
    h = ["--home", str(home)]
    _run("chain", "up", "--detach", "--port", str(free_port()), *h, env=env)
    server = None
    seen: dict[str, str] = {}
    try:
        # The local chain's coordinator key, in a keystore of its own (it already holds the role).
        dev_key = open_chain(home / "deployment.json").deployment.dev_keys["coordinator"]
        keystore = tmp_path / "coordinator.json"
        keystore.write_text(json.dumps(Account.encrypt(dev_key, password)))
        config = tmp_path / "run.toml"
        config.write_text(
            f'[chain]\ncoordinator_key = "{keystore}"\n\n[federation]\nrounds = 1\nmin_nodes = 1\n'
            "auth_timeout = 600\n"
        )
        args = ["server", "--config", str(config), "--port", str(free_port()), *h]
        server = _spawn(args, tmp_path / "server.out", env)
        deadline = time.monotonic() + 150
        while not _round_zero(home) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _round_zero(home), (tmp_path / "server.out").read_text()
        for proc in psutil.Process(server.pid).children(recursive=True):
            try:
                command = " ".join(proc.cmdline())
                if "flwr" in command or "flower" in command:  # Flower's processes: they run the apps
                    environ = Path(f"/proc/{proc.pid}/environ").read_text(errors="replace")
                    seen[command[:160]] = environ + command
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                continue
        handed = list(home.glob("runs/*/coordinator.password"))
    finally:
        stop_commands([server], h, env)
    assert any("flwr-serverapp" in c for c in seen), list(seen)
    assert any("flower-superlink" in c for c in seen), list(seen)
    assert [c for c, text in seen.items() if password in text] == []
    assert handed == []  # read once by the ServerApp, then deleted


def _round_zero(home: Path) -> bool:
    """Whether the run's events file has round 0's report (the ServerApp has the coordinator's key)."""
    return any('"round": 0' in f.read_text() for f in home.glob("runs/*/rounds.jsonl"))
