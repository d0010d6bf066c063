"""NodeConfig is the one schema between `flchain client` and the ClientApp: what the command writes into
the SuperNode's --node-config is what the app reads back, through Flower's own parser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from flwr.common.config import parse_config_args

from fl_chain.chain.identity import write_keystore
from fl_chain.chain.setup.localnode import free_port
from fl_chain.errors import FlchainError
from fl_chain.proctree import stop_tree
from fl_chain.runners.processes import format_node_config
from fl_chain.wire.node_config import NodeConfig
from tests.chainutil import LocalChain, fresh_deployment, home_with_deployment, launch
from tests.conftest import watched_popen


def test_round_trip_through_flowers_parser(tmp_path: Path) -> None:
    data = tmp_path / "mine.npz"
    data.write_bytes(b"")
    config = NodeConfig(
        deployment=tmp_path / "deployment.json",
        rpc="http://10.1.2.3:8545",
        key_path=tmp_path / "node.json",
        partition_id=2,
        num_partitions=5,
        partitioning="dirichlet",
        alpha=0.3,
        data_seed=7,
        data_path=data,
        task="tests.user_task:TASK",
        model_source="store",
        finalized_only=True,
    )
    parsed = parse_config_args([format_node_config(config.to_node_config())])
    assert NodeConfig.from_node_config(parsed) == config


def test_bad_node_config_values_are_one_line_errors(tmp_path: Path) -> None:
    base = {"flchain-deployment": str(tmp_path / "d.json")}
    with pytest.raises(FlchainError, match="no 'flchain-deployment'"):
        NodeConfig.from_node_config({})
    with pytest.raises(FlchainError, match=r"--partitioning \(node config 'flchain-partitioning'\) 'zipf'"):
        NodeConfig.from_node_config({**base, "flchain-partitioning": "zipf"})
    with pytest.raises(FlchainError, match=r"node config 'flchain-alpha': cannot read 'lots'"):
        NodeConfig.from_node_config({**base, "flchain-alpha": "lots"})


def test_flchain_client_hands_its_task_and_seed_to_the_supernode(chain: LocalChain, tmp_path: Path) -> None:
    """The SuperNode that `flchain client` starts carries the ML task and partition seed it was given
    (before, every real node trained digits with seed 42 whatever it was told); SIGTERM stops it all."""
    key = tmp_path / "node.json"
    extra = ["--task", "tests.user_task:TASK", "--data-seed", "7", "--partition", "1/3"]
    with _client(chain, tmp_path, key, extra) as client:
        supernode = _wait_for_child(client.pid, "flower-supernode")
        cmdline = supernode.cmdline()
        parsed = parse_config_args([cmdline[cmdline.index("--node-config") + 1]])
        node = NodeConfig.from_node_config(parsed)
        assert (node.task, node.data_seed, node.partition_id, node.num_partitions) == (
            "tests.user_task:TASK",
            7,
            1,
            3,
        )
        assert node.key_path == key.resolve() and "s3cret-pw-Zq" not in " ".join(
            cmdline
        )  # the password is not argv
    assert _ended(supernode)


def test_sigterm_stops_a_client_whose_chain_and_superlink_are_gone(tmp_path: Path) -> None:
    """A client left alone (its chain stopped and waited for, no SuperLink ever there, its SuperNode
    restarting) still stops on SIGTERM with everything it started;
    one such client once ran on for 25 minutes."""
    process = launch("anvil", tmp_path / "anvil")
    try:
        chain = fresh_deployment(process)
        with _client(chain, tmp_path, tmp_path / "node.json", []) as client:
            supernode = _wait_for_child(client.pid, "flower-supernode")
            process.stop()
            out = tmp_path / "client.out"
            deadline = time.monotonic() + 60
            while not _chain_gone(out.read_text()) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _chain_gone(out.read_text()), out.read_text()[-2000:]
            assert client.poll() is None  # it keeps supervising until told to stop
    finally:
        process.stop()
    assert client.returncode is not None
    assert "stopping the node" in out.read_text()
    assert _ended(supernode)


def _ended(proc: psutil.Process, timeout: float = 10.0) -> bool:
    """Whether `proc` is gone or a zombie, allowing a SIGKILLed process under load the moments the
    kernel takes to tear it down after its stopper returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _chain_gone(output: str) -> bool:
    """Whether the client has said that its chain stopped answering (it waits, then gives up polling)."""
    return "is not answering" in output or "chain unavailable" in output


@contextmanager
def _client(
    chain: LocalChain, tmp_path: Path, key: Path, extra: list[str]
) -> Iterator[subprocess.Popen[str]]:
    """`flchain client` on the chain, towards a SuperLink port nobody listens on, its output in
    tmp_path/client.out; SIGTERMed on the way out, and failing the test (its tree stopped by PID) if it
    does not exit within 30 s."""
    home = home_with_deployment(chain, tmp_path)
    write_keystore(key, "s3cret-pw-Zq")
    env = {**os.environ, "FLCHAIN_KEY_PASSWORD": "s3cret-pw-Zq", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    args = ["client", "--key", str(key), "--superlink", f"127.0.0.1:{free_port()}", "--home", str(home)]
    with (tmp_path / "client.out").open("w") as out:
        client = watched_popen(
            [sys.executable, "-m", "fl_chain", *args, *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            yield client
        finally:
            client.send_signal(signal.SIGTERM)
            try:
                client.wait(timeout=30)
            except subprocess.TimeoutExpired:  # the test fails, and leaves no SuperNode behind
                stop_tree(client.pid)
                raise


def _wait_for_child(pid: int, name: str, timeout: float = 30.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if any(name in part for part in child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no {name} process under {pid}")


def test_simulated_nodes_take_their_key_by_partition_id(tmp_path: Path) -> None:
    from fl_chain.node.simulated_keys import simulated_node_settings, write_simulated_keys

    keys = ["0x" + "11" * 32, "0x" + "22" * 32]
    path = write_simulated_keys(tmp_path / "keys.json", tmp_path / "deployment.json", keys)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    node = simulated_node_settings(path, {"partition-id": 1, "num-partitions": 2})
    assert node.private_key == keys[1] and node.deployment == (tmp_path / "deployment.json").resolve()
    assert (node.partition_id, node.num_partitions) == (1, 2)
    with pytest.raises(FlchainError, match=r"keys.json: no key for simulated node 2 \(the file has 2\)"):
        simulated_node_settings(path, {"partition-id": 2, "num-partitions": 3})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FlchainError, match=r"bad.json: not JSON"):
        simulated_node_settings(tmp_path / "bad.json", {"partition-id": 0, "num-partitions": 1})
    with pytest.raises(FlchainError, match=r"'flchain-simulated-keys': cannot read .*missing.json"):
        simulated_node_settings(tmp_path / "missing.json", {"partition-id": 0, "num-partitions": 1})
