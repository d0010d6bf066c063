"""Bad input to `flchain server`, `client`, `demo` and `status`: one line, non-zero exit, nothing started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fl_chain.chain.identity import write_keystore
from fl_chain.cli import run
from tests.test_cli_chain_node import assert_one_line_error


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = run(list(args))
    return code, capsys.readouterr().err


def test_server_config_and_chain_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[federation]\nstrategy = "FedMagic"\n')
    code, err = _cli(capsys, "server", "--config", str(bad), "--home", str(tmp_path))
    assert_one_line_error(code, err, str(bad), "unknown strategy 'FedMagic'")
    bad.write_text("[federation]\nrounds = 2\nfoo = 1\n")
    code, err = _cli(capsys, "server", "--config", str(bad), "--home", str(tmp_path))
    assert_one_line_error(code, err, "unknown field 'federation.foo'")
    good = tmp_path / "good.toml"
    good.write_text("[federation]\nrounds = 1\n")
    code, err = _cli(capsys, "server", "--config", str(good), "--home", str(tmp_path / "nohome"))
    assert_one_line_error(code, err, "deployment.json not found")
    code, err = _cli(capsys, "server", "--config", str(tmp_path / "none.toml"))
    assert_one_line_error(code, err, "none.toml does not exist")
    code, err = _cli(capsys, "server", "--config", str(good), "--host", "0.0.0.0", "--home", str(tmp_path))
    assert_one_line_error(code, err, "not loopback", "--certificates")


def test_server_with_wrong_rpc_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], anvil_process, chain
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    chain.client.deployment.save(home / "deployment.json")
    config = tmp_path / "rpc.toml"
    config.write_text('[chain]\nrpc = "http://127.0.0.1:1"\n')
    code, err = _cli(capsys, "server", "--config", str(config), "--home", str(home))
    assert_one_line_error(code, err, "cannot reach the Ethereum node at http://127.0.0.1:1")
    data = json.loads((home / "deployment.json").read_text())
    (home / "deployment.json").write_text(json.dumps({**data, "chain_id": 99}))
    config.write_text("[federation]\nrounds = 1\n")
    code, err = _cli(capsys, "server", "--config", str(config), "--home", str(home))
    assert_one_line_error(code, err, "is for chain id 99")


def test_client_input_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, chain
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    chain.client.deployment.save(home / "deployment.json")
    key = tmp_path / "node.json"
    write_keystore(key, "right")
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", "wrong")
    code, err = _cli(capsys, "client", "--key", str(key), "--home", str(home))
    assert_one_line_error(code, err, f"wrong password for keystore {key}")
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", "right")
    code, err = _cli(
        capsys, "client", "--key", str(key), "--data", str(tmp_path / "nope.npz"), "--home", str(home)
    )
    assert_one_line_error(code, err, "nope.npz: file does not exist")
    code, err = _cli(capsys, "client", "--key", str(key), "--partition", "3/2", "--home", str(home))
    assert_one_line_error(code, err, "--partition '3/2'")
    code, err = _cli(capsys, "client", "--key", str(tmp_path / "missing.json"), "--home", str(home))
    assert_one_line_error(code, err, "missing.json not found")


def test_demo_and_status_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], chain) -> None:
    code, err = _cli(capsys, "demo", "--backend", "geth", "--home", str(tmp_path))
    assert_one_line_error(code, err, "--backend 'geth'")
    code, err = _cli(capsys, "demo", "--non-iid", "0", "--home", str(tmp_path))
    assert_one_line_error(code, err, "--non-iid 0.0")
    code, err = _cli(capsys, "demo", "--verified", "--commitment", "--home", str(tmp_path))
    assert_one_line_error(code, err, "a run has one ledger mode")
    home = tmp_path / "home"
    home.mkdir()
    chain.client.deployment.save(home / "deployment.json")
    code, out = run(["status", "--home", str(home)]), capsys.readouterr().out
    assert code == 0 and "no task" in out
    code, err = _cli(capsys, "status", "--task", "5", "--home", str(home))
    assert_one_line_error(code, err, "task 5 does not exist")
