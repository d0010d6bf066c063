"""`flchain chain` and `flchain node` as users run them: real processes, real chain, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fl_chain.chain.setup.localnode import free_port
from fl_chain.cli import run
from fl_chain.proctree import pid_alive
from tests.conftest import watched_popen

FLCHAIN = [sys.executable, "-m", "fl_chain"]
PASSWORD = "correct horse"


def flchain(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess, as a user would."""
    full_env = {**os.environ, "FLCHAIN_KEY_PASSWORD": PASSWORD, **(env or {})}
    return subprocess.run(
        [*FLCHAIN, *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process (fast) and capture its output."""
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """A failure is exit code 1 and a single 'error:' line naming the problem, never a traceback."""
    assert code == 1, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture()
def running(home: Path) -> Iterator[Path]:
    """A chain started with `flchain chain up --detach` in `home`, brought down afterwards."""
    result = flchain("chain", "up", "--detach", "--port", str(free_port()), "--home", str(home))
    assert result.returncode == 0, result.stderr
    try:
        yield home
    finally:
        flchain("chain", "down", "--home", str(home))


def test_up_status_down_leaves_no_process(running: Path) -> None:
    pid = json.loads((running / "chain.json").read_text())["pid"]
    assert pid_alive(pid)
    status = flchain("chain", "status", "--home", str(running))
    assert status.returncode == 0, status.stderr
    for needle in ("NodeRegistry", "ModelLedger", "Reputation", "31337", "rounds committed"):
        assert needle in status.stdout
    again = flchain("chain", "up", "--detach", "--port", str(free_port()), "--home", str(running))
    assert again.returncode == 1 and "already running" in again.stderr
    down = flchain("chain", "down", "--home", str(running))
    assert down.returncode == 0 and f"pid {pid}" in down.stdout
    assert not pid_alive(pid)
    assert not (running / "chain.json").exists()


def test_foreground_up_stops_its_chain_on_ctrl_c(home: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [*FLCHAIN, "chain", "up", "--backend", "anvil", "--port", str(free_port()), "--home", str(home)]
    proc = watched_popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (home / "chain.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = json.loads((home / "chain.json").read_text())["pid"]
        assert pid_alive(pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not pid_alive(pid)
    assert not (home / "chain.json").exists()


def test_node_lifecycle_through_the_cli(
    running: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", PASSWORD)
    h = ["--home", str(running)]
    key = tmp_path / "node.json"
    code, out, _ = cli(capsys, "node", "keygen", "--out", str(key))
    assert code == 0 and PASSWORD not in out and PASSWORD not in key.read_text()
    address = "0x" + json.loads(key.read_text())["address"]
    code, out, err = cli(capsys, "node", "apply", "--key", str(key), "--samples-per-sec", "250", *h)
    assert code == 0 and "Pending" in out, err
    for action, expected in (("approve", "Active"), ("suspend", "Suspended"), ("approve", "Active")):
        code, out, err = cli(capsys, "node", action, address, *h)
        assert code == 0 and expected in out, err
    code, out, _ = cli(capsys, "node", "show", str(key), *h)
    assert code == 0 and "Active" in out and "250" in out and "0.500000" in out
    code, out, _ = cli(capsys, "node", "list", *h)
    assert code == 0 and address.lower() in out.lower() and "of 1" in out
    code, out, err = cli(capsys, "node", "revoke", address, *h)
    assert code == 0 and "Revoked" in out

    # Errors: one line, non-zero exit.
    code, _, err = cli(capsys, "node", "approve", address, *h)
    assert_one_line_error(code, err, "InvalidTransition", "from=Revoked")
    code, _, err = cli(capsys, "node", "approve", "0x1234", *h)
    assert_one_line_error(code, err, "'0x1234' is not an Ethereum address")
    code, _, err = cli(capsys, "node", "suspend", address, "--key", str(key), *h)
    assert_one_line_error(code, err, "lacks REGISTRAR_ROLE")
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", "wrong")
    code, _, err = cli(capsys, "node", "apply", "--key", str(key), *h)
    assert_one_line_error(code, err, f"wrong password for keystore {key}")
    code, _, err = cli(capsys, "node", "keygen", "--out", str(key))
    assert_one_line_error(code, err, "already exists")


def test_deployment_problems_are_one_line_errors(
    running: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "chain", "status", "--home", str(tmp_path / "empty"))
    assert_one_line_error(code, err, "deployment.json not found", "flchain chain up")
    code, _, err = cli(capsys, "chain", "status", "--home", str(running), "--rpc", "http://127.0.0.1:1")
    assert_one_line_error(code, err, "cannot reach the Ethereum node at http://127.0.0.1:1")
    data = json.loads((running / "deployment.json").read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**data, "chain_id": 5}))
    code, _, err = cli(capsys, "chain", "status", "--deployment", str(other))
    assert_one_line_error(code, err, "is for chain id 5", "is chain id 31337")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = cli(capsys, "chain", "status", "--deployment", str(broken))
    assert_one_line_error(code, err, "broken.json: not valid JSON")
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({k: v for k, v in data.items() if k != "contracts"}))
    code, _, err = cli(capsys, "chain", "status", "--deployment", str(missing))
    assert_one_line_error(code, err, "missing field 'contracts'")


def test_deploy_onto_an_existing_node_and_a_fresh_chain_has_no_contracts(
    running: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", PASSWORD)
    rpc = json.loads((running / "deployment.json").read_text())["rpc_url"]
    key = tmp_path / "admin.json"
    cli(capsys, "node", "keygen", "--out", str(key))
    code, _, err = cli(capsys, "chain", "deploy", "--rpc", rpc, "--key", str(key), "--home", str(tmp_path))
    assert_one_line_error(code, err, "has no ether")
    # Fund the new admin from the local faucet, then deploy a second set of contracts onto the same node.
    from eth_account import Account

    from fl_chain.chain.client import open_chain

    client = open_chain(running / "deployment.json")
    admin_address = "0x" + json.loads(key.read_text())["address"]
    client.fund(Account.from_key(client.deployment.dev_keys["admin"]), admin_address, 10**18)
    code, out, err = cli(capsys, "chain", "deploy", "--rpc", rpc, "--key", str(key), "--home", str(tmp_path))
    assert code == 0, err
    deployed = json.loads((tmp_path / "deployment.json").read_text())
    assert deployed["roles"]["coordinator"].lower() == admin_address.lower()
    assert "dev_keys" not in deployed and not (tmp_path / "deployment.dev-keys.json").exists()
    code, out, err = cli(capsys, "chain", "status", "--home", str(tmp_path))
    assert code == 0 and deployed["contracts"]["ModelLedger"] in out, err
    code, _, err = cli(capsys, "chain", "deploy", "--rpc", "ftp://x", "--key", str(key))
    assert_one_line_error(code, err, "expected http://HOST:PORT")
