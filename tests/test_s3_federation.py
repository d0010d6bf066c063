"""Federations whose store is an S3 bucket on a real S3 server (moto, IAM checks on): the Simulation
Engine demo, then an audit reading every blob, manifest and update back; and the Deployment Engine
(`flchain server` + two `flchain client`), whose nodes load each model from the bucket with read-only
credentials that cannot see the updates."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fl_chain.chain import ledger
from fl_chain.chain.client import open_chain
from fl_chain.chain.setup import bootstrap
from fl_chain.chain.setup.localnode import free_port
from fl_chain.config import RunConfig
from fl_chain.demo import run_demo
from fl_chain.errors import FlchainError
from fl_chain.store_sync import sync_stores
from fl_chain.verify.audit import audit_task
from tests.s3util import MotoServer, read_only
from tests.test_e2e_deployment import PASSWORD, _run, _spawn, registered_keys, stop_commands


def test_demo_on_s3_is_audited_synced_and_served_by_a_mirror(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's store on S3; the audit re-derives every round from it; `store sync` copies it to a
    directory (update blobs too); a model the bucket lost is served by that mirror (FLCHAIN_MIRRORS), the
    hash deciding; from the directory to another bucket (without the updates), every hash checked: an
    object whose bytes do not match its name is refused and the command exits 1."""
    bucket = s3.bucket()
    config = RunConfig()
    config.federation.rounds = 2
    config.task.local_epochs = 1
    config.ledger.mode = "verified"  # update blobs and manifests go to the bucket beside the models
    config.scoring.method = "cosine"  # scores the audit recomputes exactly
    config.store.dir = f"s3://{bucket}/fed"
    home, mirror = tmp_path / "demo", tmp_path / "mirror"
    home.mkdir()
    local = bootstrap.start_local(home, "anvil")
    try:
        result = run_demo(config, 3, home, plot=False, local=local)
        findings = audit_task(local.client, result.task)  # reads models, manifests and updates from S3
        records = [ledger.get_round(local.client, result.task, r) for r in range(result.chain_rounds)]
        keys = s3.keys(bucket)
        synced = sync_stores(f"s3://{bucket}/fed", str(mirror), updates=True)
        s3.s3().delete_object(Bucket=bucket, Key=f"fed/{records[2].model_hash.hex()}")
        with pytest.raises(FlchainError, match=f"model blob {records[2].uri} not found"):
            ledger.load_model(local.client, result.task, 2)
        monkeypatch.setenv("FLCHAIN_MIRRORS", str(mirror))
        assert ledger.load_model(local.client, result.task, 2)[0].model_hash == records[2].model_hash
        served = [f.detail for f in audit_task(local.client, result.task) if f.check == "blob"]
    finally:
        local.stop()
    assert result.chain_rounds == 3
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert [f.where for f in findings if f.check == "derivation"] == ["task 1 round 1", "task 1 round 2"]
    for record in records:
        assert record.uri == f"s3://{bucket}/fed/{record.model_hash.hex()}"
        assert f"fed/{record.model_hash.hex()}" in keys
    copy = f"{mirror.as_uri()}/{records[2].model_hash.hex()}"
    assert served[2] == f"{records[2].uri} (served by the mirror {copy})"
    assert len([k for k in keys if k.startswith("fed/updates/")]) == 6  # 3 nodes x 2 rounds
    assert len([k for k in keys if k.startswith("fed/rounds/t")]) == 2  # the manifests
    assert len([k for k in keys if k.startswith("fed/rounds/rules-")]) == 1
    assert not (home / "store").exists()  # nothing went to a local directory

    assert synced.copied == {"model": 3, "document": 3, "update": 6} and synced.refused == []
    assert sorted(str(p.relative_to(mirror)) for p in mirror.rglob("*") if p.is_file()) == sorted(
        k.removeprefix("fed/") for k in keys
    )
    (mirror / ("ab" * 32)).write_bytes(b"not the blob its name says")
    back = s3.bucket()
    out = subprocess.run(
        [sys.executable, "-m", "fl_chain", "store", "sync", str(mirror), f"s3://{back}/copy"],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"1 objects refused: {'ab' * 32}: hashes to" in out.stderr
    assert "3 models, 3 documents, 0 update blobs copied" in out.stdout
    public = [k.removeprefix("fed/") for k in keys if not k.startswith("fed/updates/")]
    assert s3.keys(back) == sorted("copy/" + k for k in public)


def test_deployment_nodes_load_models_from_s3_with_read_only_credentials(
    moto_process: MotoServer, tmp_path: Path
) -> None:
    """`flchain server` with `[store] dir = "s3://…"` and the coordinator's key; two `flchain client`
    with `--model-source store` and a node key that may read the bucket but not its updates/."""
    s3 = moto_process
    bucket = s3.bucket()
    node = s3.user(read_only(bucket, deny=(f"{bucket}/fed/updates",)))
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base |= {"FLCHAIN_KEY_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    base |= {"FLCHAIN_TEST_MARKER": f"flchain-s3-{uuid.uuid4()}"}
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    h = ["--home", str(home)]
    _run("chain", "up", "--detach", "--port", str(free_port()), *h, env=base)
    procs: list[subprocess.Popen] = []
    try:
        keys = registered_keys(tmp_path, 2, h, base)
        config = tmp_path / "run.toml"
        config.write_text(
            "[federation]\nrounds = 1\nmin_nodes = 2\n\n[task]\nlocal_epochs = 1\n\n"
            f'[ledger]\nmode = "verified"\n\n[store]\ndir = "s3://{bucket}/fed"\n'
            f'endpoint_url = "{s3.endpoint}"\n'  # the coordinator's service from its config
        )
        port = free_port()
        server_env = base | s3.admin.env(s3.endpoint)  # the coordinator's key writes the bucket
        del server_env["AWS_ENDPOINT_URL"]
        args = ["server", "--config", str(config), "--port", str(port), *h]
        server = _spawn(args, tmp_path / "s.out", server_env)
        procs.append(server)
        for i, key in enumerate(keys):
            args = ["client", "--key", str(key), "--superlink", f"127.0.0.1:{port}", "--partition", f"{i}/2"]
            args += ["--model-source", "store", *h]
            procs.append(_spawn(args, tmp_path / f"c{i}.out", base | node.env(s3.endpoint)))
        server.wait(timeout=400)
        logs = "".join(p.read_text() for p in sorted(tmp_path.glob("*.out")))
        assert server.returncode == 0, logs
        chain = open_chain(home / "deployment.json")
        task = ledger.task_count(chain)
        assert ledger.round_count(chain, task) == 2
        for rnd in range(2):
            assert ledger.get_round(chain, task, rnd).uri.startswith(f"s3://{bucket}/fed/")
        assert len(ledger.contributions(chain, task, 1)) == 2  # both nodes loaded round 0 from S3
        time.sleep(1.0)
        for i in range(2):
            client_out = (tmp_path / f"c{i}.out").read_text()
            assert "round 1 of task" in client_out and "committed" in client_out, client_out
        assert len([k for k in s3.keys(bucket) if k.startswith("fed/updates/")]) == 2
    finally:
        stop_commands(procs, h, base)
