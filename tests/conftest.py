"""Shared fixtures: a real anvil process per test session, a fresh deployment per test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fl_chain import watchdog
from fl_chain.chain.setup.localnode import ChainProcess
from tests.chainutil import LocalChain, fresh_deployment, launch
from tests.s3util import MotoServer


@contextmanager
def flower_server_identity(run_id: int) -> Iterator[None]:
    """Flower stamps messages built outside its runtime with the ServerApp's identity: set one, as the
    runtime would, and restore the previous one after."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = run_id, 1, 0
    try:
        yield
    finally:
        TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


@pytest.fixture(scope="session")
def anvil_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainProcess]:
    """One anvil node for the session, stopped by PID even if tests fail."""
    process = launch("anvil", tmp_path_factory.mktemp("anvil"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture()
def chain(anvil_process: ChainProcess) -> LocalChain:
    """A fresh deployment of the three contracts on the session's anvil."""
    return fresh_deployment(anvil_process)


@pytest.fixture(scope="session")
def moto_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto S3 server for the session (IAM checks on), stopped by PID even if tests fail; tests make
    their own buckets and users."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def s3(moto_process: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The session's S3 server, with this process's AWS environment set to its admin key."""
    for name, value in moto_process.admin.env(moto_process.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_process


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """An empty flchain state directory."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With FLCHAIN_RELIABILITY_JSON set (bench/reliability.py does), each test's outcome is appended
    there as a JSON line, for docs/reliability.md."""
    import json
    import os

    target = os.environ.get("FLCHAIN_RELIABILITY_JSON")
    if target and (report.when == "call" or report.outcome != "passed"):
        with open(target, "a") as fh:
            line = {
                "kind": "test",
                "id": report.nodeid,
                "outcome": report.outcome,
                "seconds": report.duration,
            }
            fh.write(json.dumps(line) + "\n")


@pytest.fixture(autouse=True)
def _no_detached_chain_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that started a detached chain (`flchain chain up --detach`) stops it in its own clean-up;
    if that clean-up is cut short (a pytest-timeout firing inside it), the chain is still stopped here,
    by the PID its home's PID file records."""
    yield
    tmp_path = request.node.funcargs.get("tmp_path")
    if tmp_path is None:
        return
    from fl_chain.chain.setup.localnode import read_pidfile
    from fl_chain.cli_chain import PIDFILE
    from fl_chain.errors import FlchainError

    for pidfile in Path(tmp_path).rglob(PIDFILE):
        try:
            chain = read_pidfile(pidfile)
        except FlchainError:  # a file of that name that is not a PID file
            continue
        if chain is not None:
            chain.stop()


def watched_popen(*args: Any, **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen, the process registered with this test process's watchdog (fl_chain/watchdog.py):
    if pytest dies, even by SIGKILL, the process and the descendants last seen are stopped with it."""
    proc = subprocess.Popen(*args, **kwargs)
    watchdog.watch(proc.pid)
    return proc
