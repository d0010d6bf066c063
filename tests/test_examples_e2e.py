"""The example Flower Apps (examples/) end to end on Flower's Deployment Engine: anvil, `flchain server
--app`, one node started by `flchain client` and one by a plain `flower-supernode` with the node's key
settings. The apps are ordinary Flower Apps with flchain's mod and ChainStrategy added."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from fl_chain.chain import ledger
from fl_chain.chain.client import open_chain
from fl_chain.chain.setup.localnode import free_port
from fl_chain.protocol.task_identity import identity_hash
from fl_chain.runners.processes import start_supernode
from fl_chain.store_read import allow_local_store
from fl_chain.wire.report import read_reports
from tests.test_e2e_deployment import (
    FLCHAIN,
    PASSWORD,
    _run,
    _spawn,
    _stop,
    processes_left,
    registered_keys,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
APPS = {"cnn-digits": "cnndigits/1.0", "tabular-cancer": ""}  # the app id each one's ChainStrategy uses


@pytest.mark.parametrize("example", sorted(APPS))
def test_example_app_runs_on_the_ledger(example: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    marker = f"flchain-example-{uuid.uuid4()}"  # inherited by every process the commands start
    env = {**os.environ, "FLCHAIN_KEY_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["FLCHAIN_TEST_MARKER"] = marker
    h = ["--home", str(home)]
    _run("chain", "up", "--detach", "--port", str(free_port()), *h, env=env)
    server, node0, node1 = None, None, None
    try:
        keys = registered_keys(tmp_path, 2, h, env)
        addresses = {"0x" + json.loads(k.read_text())["address"].lower() for k in keys}
        port = free_port()
        server_log = tmp_path / "server.out"
        server = _spawn(
            ["server", "--app", str(EXAMPLES / example), "--port", str(port), *h], server_log, env
        )
        link = f"127.0.0.1:{port}"
        client_args = ["client", "--key", str(keys[0]), "--superlink", link, "--partition", "0/2", *h]
        node0 = _spawn(client_args, tmp_path / "client0.out", env)
        # The second node is a plain Flower SuperNode: the mod reads the key settings from its node config.
        node_config = {
            "flchain-deployment": str(home / "deployment.json"),
            "flchain-key": str(keys[1]),
            "partition-id": 1,
            "num-partitions": 2,
        }
        node1 = start_supernode(
            link,
            free_port(),
            node_config,
            tmp_path / "supernode1.out",
            None,
            {"FLCHAIN_KEY_PASSWORD": PASSWORD, "FLCHAIN_TEST_MARKER": marker},
        )
        server.wait(timeout=400)
        output = server_log.read_text()
        assert server.returncode == 0, output + (tmp_path / "supernode1.out").read_text()

        chain = open_chain(home / "deployment.json")
        task = ledger.task_count(chain)
        assert ledger.round_count(chain, task) == 4  # round 0 + the app's 3 rounds
        allow_local_store(home / "store")  # the test reads the server's file:// store as its machine would
        # The task's identity is the model's architecture and the app id, as the nodes checked it.
        _, initial = ledger.load_model(chain, task, 0)
        assert ledger.task_config_hash(chain, task) == identity_hash(initial, APPS[example])
        for rnd in range(1, 4):
            record = ledger.get_round(chain, task, rnd)
            blob = home / "store" / record.model_hash.hex()
            assert blob.exists()
            assert {a.lower() for a in ledger.contributions(chain, task, rnd)} == addresses
        reports = read_reports(next((home / "runs").glob("*/rounds.jsonl")))
        assert [r.round for r in reports] == [0, 1, 2, 3]
        assert not any(r.penalized or r.dropped for r in reports), output  # honest nodes, nobody accused
        # The app's own evaluate_fn metrics are on the reports; training helped.
        # (an unseeded initial model can already be good on tabular data: compare, don't add a margin)
        assert reports[-1].metrics["accuracy"] == reports[-1].accuracy > reports[0].accuracy
        assert reports[-1].metrics["loss"] < reports[0].metrics["loss"]
        if example == "cnn-digits":  # a validator attests with the app's own evaluate_fn
            validator = tmp_path / "validator.json"
            _run("node", "keygen", "--out", str(validator), env=env)
            _run("node", "validator-role", "0x" + json.loads(validator.read_text())["address"], *h, env=env)
            evaluate = "cnndigits.server_app:central_evaluate"
            app_env = {**env, "PYTHONPATH": str(EXAMPLES / example)}
            out = _run(
                "validator", "--key", str(validator), "--evaluate", evaluate, "--once", *h, env=app_env
            )
            assert f"attested task {task} round 3: accuracy {100 * reports[-1].accuracy:.2f} %" in out, out
    finally:
        for proc in (node0, server):
            if proc is not None:
                _stop(proc)
        if node1 is not None:
            node1.stop()
        subprocess.run([*FLCHAIN, "chain", "down", *h], env=env, capture_output=True, timeout=60, check=False)
    assert processes_left(marker) == []


def test_server_app_refuses_a_non_app_directory(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    result = subprocess.run(
        [*FLCHAIN, "server", "--app", str(tmp_path), "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode != 0
    assert "tool.flwr.app.components.serverapp' is missing" in result.stderr
    assert "Traceback" not in result.stderr


# The Simulation Engine run of examples/tabular-cancer (`flwr run` with simulated keys) is
# tests/test_installed_wheel.py: the same run, with flchain installed from its wheel.
