"""A node's key never enters app code (issue 23, point 3).

`flchain client` keeps the decrypted key in its own process and signs for its app processes through a
signing agent (runners/signing_agent.py) that signs only flchain's statements for the node's own chain,
ledger, task and round. The end-to-end test runs a real SuperLink and two real `flchain client`
processes, and submits a probe app, as a coordinator can: its ClientApp dumps its environment, its
ancestors' /proc/PID/environ and every file under $HOME/.flchain and the node's working directory, and
asks the agent to sign things flchain does not define. One node pins the probe's bundle, the other pins
another bundle (`--app-hash`) and refuses to run it."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.identity import load_key, write_keystore
from fl_chain.chain.setup.localnode import free_port
from fl_chain.coordinator.ledger_session import LedgerSession
from fl_chain.errors import FlchainError
from fl_chain.node.signer import AgentSigner
from fl_chain.protocol.join import Challenges, JoinStatement
from fl_chain.runners.processes import spawn, start_superlink, write_flwr_home
from fl_chain.runners.signing_agent import SigningAgent
from fl_chain.store import ModelStore
from tests.chainutil import LocalChain, new_nodes
from tests.conftest import watched_popen
from tests.test_e2e_deployment import _stop

FLCHAIN = [sys.executable, "-m", "fl_chain"]
OTHER_LEDGER = "0x" + "77" * 20
FAB = "ab" * 32
RUN = 5

# ---- the signing agent, in process, against a real anvil chain ----------------------------------------


@pytest.fixture()
def agent(chain: LocalChain, tmp_path: Path) -> Iterator[tuple[SigningAgent, AgentSigner, int]]:
    """An agent for a registered node with one task (round 0 committed, round 1 training); this test
    process is registered as one of its app processes, serving run RUN of bundle FAB."""
    session = LedgerSession(chain.client, chain.coordinator, ModelStore(tmp_path / "store"))
    committer, _ = session.open_task({"w": np.ones(3, np.float32)}, "probe/1.0")
    node = new_nodes(chain, 1)[0]
    running = SigningAgent(node, chain.client)
    running.start()
    running.admit(os.getpid(), RUN, FAB)
    try:
        yield running, AgentSigner(str(running.path)), committer.task
    finally:
        running.stop()


def _update(chain: LocalChain, task: int, round_number: int = 1, ledger: str | None = None) -> dict:
    return {
        "statement": "update",
        "chain": chain.client.deployment.chain_id,
        "ledger": ledger or chain.client.ledger.address,
        "task": task,
        "round": round_number,
        "hash": "0x" + "cd" * 32,
        "weight": 10,
    }


def test_the_agent_signs_only_flchain_statements_for_its_own_ledger_task_and_round(
    chain: LocalChain, agent: tuple[SigningAgent, AgentSigner, int]
) -> None:
    running, signer, task = agent
    ledger, chain_id = chain.client.ledger.address, chain.client.deployment.chain_id
    assert oct(running.path.stat().st_mode & 0o777) == "0o600"
    assert oct(running.directory.stat().st_mode & 0o777) == "0o700"
    # What flchain defines, for this ledger, the task's current round and the asking process's run:
    signed = signer.sign_update(chain_id, ledger, task, 1, b"\xcd" * 32, 10)
    assert signed.signer() == running.address
    gate = Challenges(chain_id, RUN, ledger, task)
    statement = gate.issue(11)
    assert gate.verify(11, running.address, signer.sign_join(statement)) == (running.address, "")
    # Anything else is refused with one line, and nothing is signed:
    refusals = {
        "another ledger": _update(chain, task, ledger=OTHER_LEDGER),
        "this node is on chain": {**_update(chain, task), "chain": 1},
        "is training round 1": _update(chain, task, round_number=2),
        "task 99": _update(chain, 99),
        "not a statement flchain signs": {"statement": "eth_sendTransaction", "to": OTHER_LEDGER},
    }
    for expected, body in refusals.items():
        with pytest.raises(FlchainError, match=expected):
            signer.request(body)
    for expected, other in {
        "another ledger": JoinStatement(chain_id, OTHER_LEDGER, task, RUN, 11, "a1" * 16),
        "serves run 5": JoinStatement(chain_id, ledger, task, RUN + 1, 11, "a1" * 16),
        "task 99": JoinStatement(chain_id, ledger, 99, RUN, 11, "a1" * 16),
    }.items():
        with pytest.raises(FlchainError, match=expected):
            signer.sign_join(other)


def test_the_agent_answers_no_process_it_did_not_start_and_no_unpinned_bundle(chain: LocalChain) -> None:
    node = new_nodes(chain, 1)[0]
    for pin, admitted, expected in ((None, False, "not an app process"), ("cd" * 32, True, "not the pinned")):
        running = SigningAgent(node, chain.client, app_hash=pin)
        running.admit_wait = 0.2
        running.start()
        try:
            if admitted:
                running.admit(os.getpid(), RUN, FAB)
            with pytest.raises(FlchainError, match=expected):
                AgentSigner(str(running.path)).address  # noqa: B018  (the request is the test)
        finally:
            running.stop()
        assert not running.directory.exists()


# ---- end to end: a probe app on real `flchain client` nodes ---------------------------------------------

PROBE_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "probeapp"
version = "1.0.0"
dependencies = []

[tool.flwr.app]
publisher = "attacker"

[tool.flwr.app.components]
serverapp = "probe_app:server"
clientapp = "probe_app:client"

[tool.flwr.app.config]
probe-out = ""
probe-nodes = 2
"""

PROBE_APP = '''"""What a coordinator's ClientApp can do on a node: look for anything to sign with."""
import json, os, socket, time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

server = ServerApp()  # one name per line: `flwr run` finds them by reading the source
client = ClientApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    out = Path(str(context.run_config["probe-out"]))
    nodes, deadline = [], time.time() + 120
    while len(nodes) < int(context.run_config["probe-nodes"]) and time.time() < deadline:
        time.sleep(0.5)
        nodes = list(grid.get_node_ids())
    query = RecordDict({"probe": ConfigRecord({"x": 1})})
    messages = [Message(query, message_type="query", dst_node_id=n) for n in nodes]
    answers = {}
    for reply in grid.send_and_receive(messages, timeout=120):
        error = reply.error.reason if reply.has_error() else ""
        answers[str(reply.metadata.src_node_id)] = error
    (out / "server.json").write_text(json.dumps(answers))


def ancestors():
    found, pid = {}, os.getppid()
    while pid > 1:
        try:
            found[str(pid)] = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError as exc:
            found[str(pid)] = f"unreadable: {exc.strerror}"
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def files(roots):
    found = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    if os.path.isfile(path) and os.path.getsize(path) < 4_000_000:
                        found[path] = Path(path).read_bytes().decode(errors="replace")
                except OSError:
                    pass
    return found


def ask_agent(bodies):
    path, answers = os.environ.get("FLCHAIN_SIGNER"), []
    for body in bodies if path else []:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(30)
                sock.connect(path)
                sock.sendall(json.dumps(body).encode() + b"\\n")
                answers.append(json.loads(sock.makefile().readline()))
        except (OSError, ValueError) as exc:
            answers.append({"oserror": str(exc)})
    return answers


@client.query()
def probe(message: Message, context: Context) -> Message:
    home = Path(os.environ.get("HOME", "/nonexistent"))
    dump = {
        "environment": dict(os.environ),
        "ancestors": ancestors(),
        "files": files([home / ".flchain", Path.cwd()]),
        "agent": ask_agent([
            {"statement": "eth_sendTransaction", "to": "0x" + "77" * 20, "value": 10**18},
            {"statement": "update", "chain": 31337, "ledger": "0x" + "77" * 20, "task": 1, "round": 1,
             "hash": "0x" + "ab" * 32, "weight": 1},
        ]),
    }
    out = Path(str(context.run_config["probe-out"]))
    (out / f"probe-{context.node_id}.json").write_text(json.dumps(dump))
    return Message(RecordDict({"done": MetricRecord({"ok": 1})}), reply_to=message)
'''


def _probe_app(directory: Path) -> str:
    """Write the probe app; its FAB hash, as `flwr build` and `flwr run` compute it."""
    from flwr.cli.build import build_fab_from_disk

    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(PROBE_PYPROJECT)
    (directory / "probe_app.py").write_text(PROBE_APP)
    return hashlib.sha256(build_fab_from_disk(directory)).hexdigest()


def _node(tmp_path: Path, name: str, chain: LocalChain, password: str) -> tuple[Path, Path, str]:
    """A node's $HOME (keystore and state under ~/.flchain) and working directory; its private key."""
    home = tmp_path / f"{name}-home"
    (home / ".flchain").mkdir(parents=True)
    # what a node on another machine receives: addresses, ABIs, chain id, RPC URL, no development key
    replace(chain.client.deployment, dev_keys={}).save(home / ".flchain" / "deployment.json")
    key = home / ".flchain" / "node.json"
    write_keystore(key, password)
    work = tmp_path / f"{name}-work"
    work.mkdir()
    return home, work, load_key(key, password).key.hex().removeprefix("0x").lower()


def test_a_coordinators_client_app_finds_nothing_to_sign_with(chain: LocalChain, tmp_path: Path) -> None:
    password = "pw-" + secrets.token_hex(12)  # in no environment but the `flchain client` commands'
    app_hash = _probe_app(tmp_path / "probeapp")
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    link = start_superlink("127.0.0.1", port, tmp_path / "superlink.log", None)
    started: list[subprocess.Popen] = []
    submitted = None
    nodes = {}
    try:
        for name, pin in (("pinned", app_hash), ("other", hashlib.sha256(b"another app").hexdigest())):
            home, work, key_hex = _node(tmp_path, name, chain, password)
            env = {**os.environ, "HOME": str(home), "FLCHAIN_KEY_PASSWORD": password, "PYTHONUNBUFFERED": "1"}
            args = [
                "client",
                "--key",
                str(home / ".flchain" / "node.json"),
                "--superlink",
                f"127.0.0.1:{port}",
            ]
            args += ["--home", str(home / ".flchain"), "--app-hash", pin]
            with open(tmp_path / f"{name}.out", "w") as fh:
                started.append(
                    watched_popen([*FLCHAIN, *args], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=work)
                )
            nodes[name] = key_hex
        flwr_home = write_flwr_home(tmp_path / "flwr-home", f"127.0.0.1:{port}")
        config = f"probe-out='{out}'"
        submitted = spawn(
            "flwr run",
            [
                str(Path(sys.executable).parent / "flwr"),
                "run",
                str(tmp_path / "probeapp"),
                "flchain",
                "--run-config",
                config,
            ],
            tmp_path / "flwr-run.log",
            {"FLWR_HOME": str(flwr_home)},
        )
        deadline = time.monotonic() + 300
        while not (out / "server.json").exists() and time.monotonic() < deadline:
            assert all(p.poll() is None for p in started), _logs(tmp_path)
            assert submitted.proc.poll() in (None, 0), (tmp_path / "flwr-run.log").read_text()
            time.sleep(1)
        assert (out / "server.json").exists(), _logs(tmp_path)
    finally:
        for proc in started:
            _stop(proc)
        if submitted is not None:
            submitted.stop()
        link.stop()
    answers = json.loads((out / "server.json").read_text())
    dumps = [json.loads(p.read_text()) for p in out.glob("probe-*.json")]
    # The node pinned to another bundle refused the probe unrun, in one line; the pinned node ran it.
    refusals = [reason for reason in answers.values() if reason]
    assert len(answers) == 2 and len(refusals) == 1 and len(dumps) == 1, answers
    other = hashlib.sha256(b"another app").hexdigest()
    assert f"app bundle {app_hash} is not the one this node runs (--app-hash {other})" in refusals[0]
    assert "\n" not in refusals[0]
    dump = dumps[0]
    text = json.dumps(dump).lower()
    # It searched where the key could be: its environment, its ancestors' /proc/PID/environ (the
    # SuperNode's and flchain client's among them), the node's ~/.flchain (the keystore) and working dir.
    assert dump["environment"].get("FLCHAIN_SIGNER") and any(p.endswith("node.json") for p in dump["files"])
    assert len(dump["ancestors"]) >= 2
    # ... and found neither the password nor either node's private key, nor a key variable at all.
    assert password.lower() not in text
    assert not [name for name, key_hex in nodes.items() if key_hex in text]
    assert not [k for k in chain.client.deployment.dev_keys.values() if k.lower().removeprefix("0x") in text]
    assert "FLCHAIN_NODE_KEY" not in dump["environment"] and "FLCHAIN_KEY_PASSWORD" not in dump["environment"]
    # The agent refused what flchain does not define, and a claim for another ledger.
    first, second = dump["agent"]
    assert not first["ok"] and "not a statement flchain signs" in first["error"]
    assert not second["ok"] and "another ledger" in second["error"]


def _logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(tmp_path.glob("*.out"))
    )


def test_an_app_hash_that_is_not_a_hash_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*FLCHAIN, "client", "--key", str(tmp_path / "k.json"), "--app-hash", "xyz", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode != 0 and "--app-hash 'xyz': expected 64 hex digits" in result.stderr
    assert "Traceback" not in result.stderr
