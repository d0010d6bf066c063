"""`flchain watch --once` and `flchain pull` against a real chain and store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task
from fl_chain.cli import run
from fl_chain.store import ModelStore
from tests.chainutil import LocalChain, new_nodes
from tests.test_cli_chain_node import assert_one_line_error


def test_watch_once_resumes_and_pull_verifies(
    chain: LocalChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    chain.client.deployment.save(home / "deployment.json")
    h = ["--home", str(home)]
    store = ModelStore(tmp_path / "store")
    client = chain.client
    nodes = new_nodes(chain, 1)
    task = create_task(client, chain.coordinator, b"\x01" * 32, store.base_uri)
    digest0, _ = store.put_arrays({"w": np.zeros(3, np.float32)})
    commit_round(client, chain.coordinator, task, 0, digest0, "", ZERO_HASH, {})
    assert run(["watch", "--once", *h]) == 0
    out = capsys.readouterr().out
    assert f"round 0 of task {task} committed" in out and "Pending -> Active" in out
    digest1, _ = store.put_arrays({"w": np.ones(3, np.float32)})
    commit_round(client, chain.coordinator, task, 1, digest1, "", digest0, {nodes[0].address: 700_000})
    assert run(["watch", "--once", *h]) == 0
    out = capsys.readouterr().out
    assert f"round 1 of task {task} committed" in out and "round 0" not in out  # resumed, no repeat

    target = tmp_path / "pulled.safetensors"
    assert run(["pull", "--task", str(task), "--out", str(target), *h]) == 0
    assert hashlib.sha256(target.read_bytes()).digest() == digest1 and "verified" in capsys.readouterr().out
    store.local_path(digest1).write_bytes(b"tampered")
    code = run(["pull", "--task", str(task), "--out", str(target), *h])
    assert_one_line_error(code, capsys.readouterr().err, "tampered", f"expected hash 0x{digest1.hex()}")
    assert hashlib.sha256(target.read_bytes()).digest() == digest1  # the earlier good copy is not overwritten


def test_watch_ws_subscribes_through_the_given_url(chain: LocalChain, tmp_path: Path) -> None:
    """`--ws URL` reaches the watcher: an unreachable websocket is retried and named, while plain HTTP
    polling of the same deployment would have worked silently."""
    import os
    import subprocess
    import sys

    from fl_chain.chain.setup.localnode import free_port

    home = tmp_path / "home"
    home.mkdir()
    chain.client.deployment.save(home / "deployment.json")
    dead_ws = f"ws://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fl_chain", "watch", "--ws", dead_ws, "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        out, err = proc.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert f"new blocks from {dead_ws}" in out
    assert "RPC unavailable" in err and "retrying" in err, err
    code = run(["watch", "--ws", "http://127.0.0.1:1", "--home", str(home)])
    assert code == 1
