"""End to end on loopback with Flower's Deployment Engine: anvil + `flchain server` + three
`flchain client` processes (one not registered), two rounds, everything real."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from fl_chain.chain.client import open_chain
from fl_chain.chain.ledger import contributions, get_round, round_count, updates_root
from fl_chain.chain.setup.localnode import free_port
from fl_chain.protocol.update_signing import ticket_digest
from fl_chain.wire.report import read_reports
from tests.conftest import watched_popen

PASSWORD = "e2e password"
FLCHAIN = [sys.executable, "-m", "fl_chain"]


def _run(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [*FLCHAIN, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "w") as fh:
        return watched_popen([*FLCHAIN, *args], stdout=fh, stderr=subprocess.STDOUT, env=env)


def registered_keys(tmp_path: Path, count: int, home_args: list[str], env: dict[str, str]) -> list[Path]:
    """`count` node keystores, applied and approved on the chain of `home_args`. In-process, by the same
    functions `flchain node keygen / apply / approve` call: those commands have their own tests
    (test_server_three_clients_one_unregistered and tests/test_cli_chain_node.py), and three command
    start-ups plus a 1 s throughput benchmark per key cost the tests that use this ~10 s a node."""
    from fl_chain.chain import enrolment, registry
    from fl_chain.chain.client import open_chain
    from fl_chain.chain.identity import load_key, resolve_account, write_keystore

    client = open_chain(Path(home_args[home_args.index("--home") + 1]) / "deployment.json")
    registrar = resolve_account(client.deployment.dev_keys, "registrar")
    keys = [tmp_path / f"node{i}.json" for i in range(count)]
    for key in keys:
        write_keystore(key, env["FLCHAIN_KEY_PASSWORD"])
        node = load_key(key, env["FLCHAIN_KEY_PASSWORD"])
        enrolment.apply(client, node, registry.Capacity(1, 1024, 5000))
        registry.registrar_action(client, registrar, "approve", node.address)
    return keys


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_commands(procs: list[subprocess.Popen | None], home_args: list[str], env: dict[str, str]) -> None:
    """Stop the commands a test started (SIGTERM, as Ctrl-C would), then its detached chain."""
    for proc in procs:
        if proc is not None:
            _stop(proc)
    subprocess.run(
        [*FLCHAIN, "chain", "down", *home_args], env=env, capture_output=True, timeout=60, check=False
    )


def test_server_three_clients_one_unregistered(tmp_path: Path) -> None:
    home = tmp_path / "home"
    marker = f"flchain-e2e-{uuid.uuid4()}"  # inherited by every process the commands start
    env = {**os.environ, "FLCHAIN_KEY_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["FLCHAIN_TEST_MARKER"] = marker
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # the user task's module, on every node
    h = ["--home", str(home)]
    _run("chain", "up", "--detach", "--port", str(free_port()), *h, env=env)
    clients: list[subprocess.Popen] = []
    server = None
    try:
        keys = [tmp_path / f"node{i}.json" for i in range(3)]
        for i, key in enumerate(keys):
            _run("node", "keygen", "--out", str(key), env=env)
            if i < 2:  # node 2 never applies: it is not registered
                _run("node", "apply", "--key", str(key), *h, env=env)
                _run("node", "approve", "0x" + json.loads(key.read_text())["address"], *h, env=env)
        addresses = ["0x" + json.loads(k.read_text())["address"] for k in keys]
        config = tmp_path / "run.toml"
        # A user task (another architecture than digits): every node must train what the server runs.
        # Verified rounds: the coordinator discloses the signed updates; each node checks its own leaf.
        config.write_text(
            "[federation]\nrounds = 2\nmin_nodes = 2\n\n"
            '[task]\nname = "tests.user_task:TASK"\nlocal_epochs = 1\n\n'
            '[ledger]\nmode = "verified"\n'
        )
        port = free_port()
        server_log = tmp_path / "server.out"
        server = _spawn(["server", "--config", str(config), "--port", str(port), *h], server_log, env)
        for i, key in enumerate(keys):
            args = [
                "client",
                "--key",
                str(key),
                "--superlink",
                f"127.0.0.1:{port}",
                "--partition",
                f"{i}/3",
                "--task",
                "tests.user_task:TASK",
                *h,
            ]
            clients.append(_spawn(args, tmp_path / f"client{i}.out", env))
        secrets = _secrets(keys)
        command_lines: list[str] = []
        while server.poll() is None and len(command_lines) < 400:  # sample the process list meanwhile
            command_lines += _processes_with(marker)
            time.sleep(0.5)
        server.wait(timeout=400)
        output = server_log.read_text()
        assert server.returncode == 0, output + "".join(
            (tmp_path / f"client{i}.out").read_text() for i in range(3)
        )
        # Neither a node's private key nor the keystore password shows in any process list or in any
        # file the run wrote (logs, reports, run specs, the store), only inside the encrypted keystores.
        assert command_lines and not [c for c in command_lines if any(x in c.lower() for x in secrets)]
        written = [f for f in tmp_path.rglob("*") if f.is_file() and f not in keys]
        assert len(written) > 10
        leaked = [f for f in written if any(x.encode() in f.read_bytes().lower() for x in secrets)]
        assert leaked == []

        # The unregistered node was named as refused; the registered ones were verified.
        unregistered = addresses[2]
        assert re.search(rf"refused .*{unregistered}.*not active", output, re.IGNORECASE), output
        chain = open_chain(home / "deployment.json")
        task = int(chain.ledger.functions.taskCount().call())
        assert round_count(chain, task) == 3  # rounds 0, 1, 2
        store = home / "store"
        for rnd in range(3):
            record = get_round(chain, task, rnd)
            blob = store / record.model_hash.hex()
            assert blob.exists() and hashlib.sha256(blob.read_bytes()).digest() == record.model_hash
            assert record.uri.endswith(record.model_hash.hex())
            participants = {a.lower() for a in contributions(chain, task, rnd)}
            assert unregistered.lower() not in participants
            if rnd > 0:
                assert participants == {a.lower() for a in addresses[:2]}
                assert updates_root(chain, task, rnd) is not None
        # Each registered node learned of the commits from its own chain watcher, and found its own
        # signed update in each verified round's manifest.
        time.sleep(1.5)
        for i in range(2):
            client_out = (tmp_path / f"client{i}.out").read_text()
            assert "round 2 of task" in client_out and "committed" in client_out, client_out
            for rnd in (1, 2):
                assert f"task {task} round {rnd}: my update is included" in client_out, client_out
        # Each node kept what it signed, with the coordinator's ticket that sampled it (what it would need
        # to complain on-chain): the ticket recovers to the task's owner.
        owner = chain.ledger.functions.getTask(task).call()[0]
        claim_files = sorted(home.rglob("*.claims.jsonl"))
        assert len(claim_files) == 2, claim_files
        for claim_file in claim_files:
            claims = [json.loads(line) for line in claim_file.read_text().splitlines()]
            assert [c["round"] for c in claims] == [1, 2]
            for c in claims:
                digest = ticket_digest(c["chain_id"], c["ledger"], task, c["round"], claim_file.name[:42])
                signer = Account.recover_message(encode_defunct(primitive=digest), signature=c["ticket"])
                assert signer == owner
    finally:
        stop_commands([*clients, server], h, env)

    # Every process the commands started (chain, SuperLink, SuperNodes, SuperExecs, app processes) is gone.
    assert processes_left(marker) == []


@pytest.mark.timeout(600)  # four server starts; each waits for the SuperNodes' reconnect backoff (<= 20 s)
def test_coordinator_faults_lose_and_double_nothing(tmp_path: Path) -> None:
    """The coordinator fails at three exact moments and `flchain server --resume` continues each time:
    (1) its store directory is gone when round 2's blob is written (a real ENOTDIR): the run stops with
    a one-line error naming the store and nothing is committed; (2) it is SIGKILLed after round 2's
    commit, before round 3 samples; (3) it is SIGKILLed after round 3's blob is stored, before its commit.
    Then, while round 3 trains, (4) the chain node stops (`flchain chain down`; anvil keeps its chain in a
    `--state` file) and starts again 8 s later: whoever needs the chain meanwhile (the nodes' mods, the
    server) says it is waiting and continues, and nobody is counted missing for the chain's outage.
    Rounds 0-3 land once each, in order, and the audit is clean. Runs over TLS (certificates from
    scripts/make-certs.sh; clients verify the SuperLink with ca.crt)."""
    from fl_chain.failpoints import FAILPOINT_ENV
    from fl_chain.proctree import descendants
    from fl_chain.store_read import allow_local_store
    from fl_chain.verify.audit import audit_task

    certs = tmp_path / "certs"
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        ["sh", str(root / "scripts" / "make-certs.sh"), str(certs)], check=True, capture_output=True
    )
    tls = ["--certificates", str(certs)]
    home = tmp_path / "home"
    marker = f"flchain-resume-{uuid.uuid4()}"
    env = {
        **os.environ,
        "FLCHAIN_KEY_PASSWORD": PASSWORD,
        "PYTHONUNBUFFERED": "1",
        "FLCHAIN_TEST_MARKER": marker,
        "COLUMNS": "200",
    }
    h = ["--home", str(home)]
    chain_args = [
        "chain",
        "up",
        "--detach",
        "--port",
        str(free_port()),
        "--state",
        str(tmp_path / "s.json"),
        *h,
    ]
    assert "(new)" in _run(*chain_args, env=env)
    clients: list[subprocess.Popen] = []
    servers: list[subprocess.Popen] = []

    def serve(log: str, *extra: str, failpoint: str = "") -> subprocess.Popen:
        server = _spawn([*server_args, *extra], tmp_path / log, {**env, FAILPOINT_ENV: failpoint})
        servers.append(server)
        return server

    def crashed(server: subprocess.Popen) -> None:
        """The ServerApp killed itself at its failpoint; the rest of the coordinator's machine follows."""
        server.wait(timeout=300)
        for pid in descendants(server.pid):
            os.kill(pid, signal.SIGKILL)

    try:
        keys = registered_keys(tmp_path, 2, h, env)
        config = tmp_path / "run.toml"
        config.write_text("[federation]\nrounds = 3\n\n[task]\nlocal_epochs = 1\n")
        port = free_port()
        server_args = ["server", "--config", str(config), "--port", str(port), *tls, *h]
        first = serve("s1.out")
        for i, key in enumerate(keys):
            args = ["client", "--key", str(key), "--superlink", f"localhost:{port}", "--partition", f"{i}/2"]
            args += ["--root-certificates", str(certs / "ca.crt"), *h]
            clients.append(_spawn(args, tmp_path / f"client{i}.out", env))
        chain = open_chain(home / "deployment.json")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if chain.ledger.functions.taskCount().call() and round_count(chain, 1) >= 2:
                break
            time.sleep(0.05)
        store = home / "store"
        store.rename(home / "store.moved")  # round 2 trains now; its blob finds no directory
        store.write_text("not a directory")
        first.wait(timeout=300)
        output = (tmp_path / "s1.out").read_text()
        assert first.returncode != 0, output
        assert "cannot store model blob" in output and str(store) in output, output
        assert "Traceback" not in output
        assert round_count(chain, 1) == 2  # rounds 0 and 1; round 2 not committed without its blob

        store.unlink()  # the operator fixes the disk
        (home / "store.moved").rename(store)
        crashed(serve("s2.out", "--resume", failpoint="after-commit@2"))
        assert "resuming task 1 after round 1" in (tmp_path / "s2.out").read_text()
        assert round_count(chain, 1) == 3  # killed after round 2's commit, before round 3

        crashed(serve("s3.out", "--resume", failpoint="after-store@3"))
        assert round_count(chain, 1) == 3  # killed between round 3's store and its commit
        blobs = [p for p in store.iterdir() if p.is_file()]  # beside them: rounds/, the task's rules
        assert len(blobs) == 4  # rounds 0-2 and round 3's blob, durable but uncommitted

        last = serve("s4.out", "--resume")
        deadline = time.monotonic() + 240
        while (tmp_path / "s4.out").read_text().count(" verified") < 2:  # round 3 starts now
            assert time.monotonic() < deadline and last.poll() is None, (tmp_path / "s4.out").read_text()
            time.sleep(0.2)
        _run("chain", "down", *h, env=env)
        time.sleep(8)
        assert "(resumed)" in _run(*chain_args, env=env)
        last.wait(timeout=300)
        output = (tmp_path / "s4.out").read_text()
        assert last.returncode == 0, output
        assert "resuming task 1 after round 2" in output
        said = output + "".join((tmp_path / f"client{i}.out").read_text() for i in range(2))
        # the server says so if a commit met the gap; a node's client does if its watcher did
        assert "is not answering" in said or "chain unavailable" in said, said
        assert "Traceback" not in said
        (final,) = [r for r in read_reports(max((home / "runs").glob("*/rounds.jsonl"))) if r.round == 3]
        assert len(final.participants) == 2 and not final.missed, final  # nobody missed for the outage
        logs = chain.ledger.events.RoundCommitted().get_logs(from_block=0, argument_filters={"task": 1})
        assert [e["args"]["round"] for e in logs] == [0, 1, 2, 3]  # none lost, none twice
        allow_local_store(home / "store")  # this test reads the server's file:// store as its machine would
        assert all(f.ok for f in audit_task(chain, 1))  # parent chain unbroken, blobs verified
    finally:
        for proc in clients + servers:
            _stop(proc)
        subprocess.run([*FLCHAIN, "chain", "down", *h], env=env, capture_output=True, timeout=60, check=False)
    assert processes_left(marker) == []


def _secrets(keys: list[Path]) -> list[str]:
    """The password and every node's private key (hex, lowercase, with and without 0x)."""
    from fl_chain.chain.identity import load_key

    hexes = [load_key(k, PASSWORD).key.hex().removeprefix("0x").lower() for k in keys]
    return [PASSWORD.lower(), *hexes]


def processes_left(marker: str, timeout: float = 10.0) -> list[str]:
    """The processes carrying `marker` once they had `timeout` seconds to end ([] as soon as none is
    left). Under load a stopped process, or a watchdog whose command has exited, may take a moment to
    go; one that lingers for seconds is what the callers' assertions catch."""
    deadline = time.monotonic() + timeout
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _processes_with(marker: str) -> list[str]:
    """Live processes whose environment carries the marker (with their full command lines)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if any(marker in value for value in proc.environ().values()):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(f"{proc.pid}: {' '.join(proc.cmdline())!r}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
