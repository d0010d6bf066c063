"""Hostile numbers on Flower's Deployment Engine (issue 24, point 3): two nodes whose app claims inf, nan
and -1 examples for honest updates (a buggy or hostile ClientApp; flchain's mod signs what the app says)
run beside two honest nodes, all real processes: anvil, `flchain server --app`, one node started by
`flchain client` and three plain `flower-supernode`s. Every round commits, each lying reply is dropped
with its reason and its node penalized (twice: then suspended), the honest nodes are scored.
Before: `int(inf)` in the screening raised OverflowError, which aborted the run in round 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from fl_chain.chain import ledger, registry
from fl_chain.chain.client import open_chain
from fl_chain.chain.identity import keystore_address
from fl_chain.chain.setup.localnode import free_port
from fl_chain.runners.processes import start_supernode
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

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tabular-cancer"
LIES = {2: "inf,-1", 3: "nan,-1"}  # partition -> the example count its app claims in rounds 1, 2

# The example's train function, changed in one line: the app claims what its node config says.
LYING_TRAIN = """
    claimed = str(context.node_config.get("test-lie-examples", ""))
    if claimed:
        round_number = int(config["server-round"])
        metrics["num-examples"] = float(claimed.split(",")[min(round_number, 2) - 1])
    return Message("""


def _lying_app(tmp_path: Path) -> Path:
    """The tabular example, whose ClientApp claims the example count its node config names."""
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("__pycache__"))
    client = app / "cancertab" / "client_app.py"
    source = client.read_text()
    assert source.count("\n    return Message(") == 1
    client.write_text(source.replace("\n    return Message(", LYING_TRAIN, 1))
    project = app / "pyproject.toml"
    settings = project.read_text()
    for old, new in (("local-epochs = 3", "local-epochs = 1"), ("min-nodes = 2", "min-nodes = 4")):
        settings = settings.replace(old, new)
    project.write_text(settings.replace("num-server-rounds = 3", "num-server-rounds = 2"))
    return app


def _lower(addresses) -> set[str]:
    return {a.lower() for a in addresses}


def keystore_addresses(keys: list[Path]) -> list[str]:
    """The checksummed addresses of these keystores (what the registry reads take)."""
    return [keystore_address(k) for k in keys]


@pytest.mark.timeout(600)
def test_inf_nan_and_negative_example_counts_are_penalized_and_every_round_commits(tmp_path: Path) -> None:
    home = tmp_path / "home"
    marker = f"flchain-hostile-{uuid.uuid4()}"  # inherited by every process the commands start
    env = {**os.environ, "FLCHAIN_KEY_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["FLCHAIN_TEST_MARKER"] = marker
    h = ["--home", str(home)]
    _run("chain", "up", "--detach", "--port", str(free_port()), *h, env=env)
    server, node0, supernodes = None, None, []
    try:
        keys = registered_keys(tmp_path, 4, h, env)
        addresses = [keystore_address(k).lower() for k in keys]
        port = free_port()
        server_log = tmp_path / "server.out"
        server = _spawn(
            ["server", "--app", str(_lying_app(tmp_path)), "--port", str(port), *h], server_log, env
        )
        link = f"127.0.0.1:{port}"
        client_args = ["client", "--key", str(keys[0]), "--superlink", link, "--partition", "0/4", *h]
        node0 = _spawn(client_args, tmp_path / "client0.out", env)
        for i in (1, 2, 3):
            node_config: dict[str, str | int | float] = {
                "flchain-deployment": str(home / "deployment.json"),
                "flchain-key": str(keys[i]),
                "partition-id": i,
                "num-partitions": 4,
            }
            if i in LIES:
                node_config["test-lie-examples"] = LIES[i]
            secrets = {"FLCHAIN_KEY_PASSWORD": PASSWORD, "FLCHAIN_TEST_MARKER": marker}
            log = tmp_path / f"supernode{i}.out"
            supernodes.append(start_supernode(link, free_port(), node_config, log, None, secrets))
        server.wait(timeout=480)
        output = server_log.read_text()
        assert server.returncode == 0, output
        assert "Traceback" not in output and "OverflowError" not in output, output

        chain = open_chain(home / "deployment.json")
        task = ledger.task_count(chain)
        assert ledger.round_count(chain, task) == 3, output  # round 0 + the app's 2 rounds, all committed
        reports = read_reports(next((home / "runs").glob("*/rounds.jsonl")))
        liars, honest = {addresses[2], addresses[3]}, {addresses[0], addresses[1]}
        assert [r.round for r in reports] == [0, 1, 2]
        for report in reports[1:]:  # every round waits for all four: the liars answer, are dropped, penalized
            assert _lower(report.participants) == honest, report
            assert _lower(report.dropped) == liars, report
            assert all("num-examples" in why for why in report.dropped.values()), report.dropped
            assert liars <= _lower(report.penalized), report
        for rnd in (1, 2):  # only the honest nodes are scored on-chain
            assert _lower(ledger.contributions(chain, task, rnd)) == honest
        # Two penalties suspend a node (default parameters); the honest nodes keep their standing.
        statuses = {a.lower(): s for a, s in registry.statuses_of(chain, keystore_addresses(keys)).items()}
        assert [statuses[a] for a in addresses] == ["Active", "Active", "Suspended", "Suspended"]
    finally:
        for proc in (node0, server):
            if proc is not None:
                _stop(proc)
        for supernode in supernodes:
            supernode.stop()
        subprocess.run([*FLCHAIN, "chain", "down", *h], env=env, capture_output=True, timeout=60, check=False)
    assert processes_left(marker) == []
