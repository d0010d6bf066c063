"""The store on a real S3 server (moto in server mode, IAM checks on): whole objects under hash keys,
bounded and verified reads, private update blobs, and an upload cut by a dying server committing
nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.ledger import round_count
from fl_chain.config import from_mapping
from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import canonical_bytes, hash_arrays
from fl_chain.store import BlobIntegrityError, BlobTooLarge, fetch_blob, open_model_store
from fl_chain.store_read import fetch
from tests.chainutil import LocalChain
from tests.rpc_proxy import RpcProxy
from tests.s3util import MotoServer, read_only


def _arrays(seed: int = 0, size: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=size).astype(np.float32), "b": np.zeros(4, np.float32)}


def test_s3_store_writes_whole_objects_and_readers_verify_them(s3: MotoServer) -> None:
    bucket = s3.bucket()
    store = open_model_store(f"s3://{bucket}/fed")
    digest, uri = store.put_arrays(_arrays())
    assert uri == f"s3://{bucket}/fed/{digest.hex()}" and store.base_uri == f"s3://{bucket}/fed/"
    assert fetch_blob(uri, digest) == canonical_bytes(_arrays())
    update = store.put_update(b"update bytes")
    doc_uri = store.put_document("t1-r1-" + "ab" * 32 + ".json", b"{}")
    assert doc_uri == f"s3://{bucket}/fed/rounds/t1-r1-{'ab' * 32}.json"
    assert store.put_arrays(_arrays()) == (digest, uri)  # a name that exists is kept, not rewritten
    # Only final keys, no temporary objects beside them.
    assert s3.keys(bucket) == sorted(
        [f"fed/{digest.hex()}", f"fed/updates/{update.hex()}", f"fed/rounds/t1-r1-{'ab' * 32}.json"]
    )
    # Reads are bounded and verified like any other: cap, tampering, a missing key, another hash.
    with pytest.raises(BlobTooLarge, match=r"larger than the 100-byte cap \(\d+ bytes\)"):
        fetch(uri, 100)
    with pytest.raises(BlobIntegrityError, match="expected hash 0x"):
        fetch_blob(uri, b"\x01" * 32)
    s3.s3().put_object(Bucket=bucket, Key=f"fed/{digest.hex()}", Body=canonical_bytes(_arrays(1)))
    with pytest.raises(BlobIntegrityError, match=f"{uri} is corrupt or tampered"):
        fetch_blob(uri, digest)
    with pytest.raises(FlchainError, match=rf"model blob s3://{bucket}/fed/{'00' * 32} not found"):
        fetch_blob(f"s3://{bucket}/fed/{'00' * 32}", b"\x00" * 32)
    # A credential in the address (it goes on-chain) or an HTTP server for a bucket is refused.
    with pytest.raises(FlchainError, match=r"'store\.dir': an s3:// store address carries no credential"):
        from_mapping({"store": {"dir": "s3://KEY:SECRET@bucket/x"}}, "run.toml")
    with pytest.raises(FlchainError, match=r"'store\.http_port': an s3:// store is served by its bucket"):
        from_mapping({"store": {"dir": "s3://bucket/x", "http_port": 0}}, "run.toml")


def test_node_credentials_are_refused_on_the_updates(s3: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two layouts, both checked by the server: update blobs under the store's `updates/`, which the
    node's IAM policy denies; or in a separate bucket the node's policy does not name. The node reads
    the public model and documents either way, and writes nothing."""
    public, private = s3.bucket("pub"), s3.bucket("priv")
    same = open_model_store(f"s3://{public}/a")
    split = open_model_store(f"s3://{public}/b", updates=f"s3://{private}/b")
    digest, uri = same.put_arrays(_arrays())
    hidden = [same.put_update(b"u1"), split.put_update(b"u2")]
    assert s3.keys(private) == [f"b/{hidden[1].hex()}"]
    node = s3.user(read_only(public, deny=(f"{public}/a/updates",)))
    validator = s3.user(read_only(public, private))
    for name, value in node.env(s3.endpoint).items():
        monkeypatch.setenv(name, value)
    assert fetch_blob(uri, digest) == canonical_bytes(_arrays())
    for where in (f"s3://{public}/a/updates/{hidden[0].hex()}", f"s3://{private}/b/{hidden[1].hex()}"):
        with pytest.raises(FlchainError, match=rf"^cannot read update blob {where}: PermissionError"):
            fetch(where, what="update blob")
    with pytest.raises(FlchainError, match=r"cannot store model blob .* PermissionError.*not committed"):
        open_model_store(f"s3://{public}/a").put_arrays(_arrays(2))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", validator.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", validator.secret)
    assert fetch(f"s3://{private}/b/{hidden[1].hex()}", what="update blob") == b"u2"
    assert fetch(f"s3://{public}/a/updates/{hidden[0].hex()}", what="update blob") == b"u1"


def test_server_killed_mid_upload_commits_nothing_then_the_round_commits(
    s3: MotoServer, chain: LocalChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator reaches its own S3 server through a proxy that cuts the round's model upload after
    1 MB: once with the server alive (no object under the hash key afterwards), once killing the server
    (by PID) at that moment. Each time the round is not committed and the error is one line; with the
    server back, the same round commits and its blob reads back verified."""
    from fl_chain.coordinator.committer import RoundCommitter

    own = MotoServer(tmp_path / "moto.log", auth=False).start()
    proxy = RpcProxy(own.port)
    try:
        for name, value in own.admin.env(proxy.endpoint).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # AWS's own knob: no retries, so the cut fails at once
        bucket = own.bucket()
        store = open_model_store(f"s3://{bucket}/fed")
        committer = RoundCommitter.new_task(chain.client, chain.coordinator, store, b"\x27" * 32)
        committer.commit(0, _arrays())
        big = _arrays(1, size=1_000_000)  # 4 MB: one PUT
        key = f"fed/{hash_arrays(big).hex()}"
        proxy.cut_after = 1024 * 1024
        with pytest.raises(FlchainError, match=rf"^cannot store model blob .* in s3://{bucket}/fed/: .*"):
            committer.commit(1, big)
        assert proxy.cuts >= 1 and key not in own.keys(bucket)
        assert round_count(chain.client, committer.task) == 1
        killed = threading.Event()

        def kill_once() -> None:  # only the first cut kills: a late one must not hit the restarted server
            if not killed.is_set():
                killed.set()
                own.kill()

        proxy.on_cut = kill_once
        with pytest.raises(
            FlchainError, match=r"^cannot store model blob [^\n]*\(the round is not committed\)$"
        ):
            committer.commit(1, big)
        assert round_count(chain.client, committer.task) == 1
        proxy.cut_after = None
        own.start()  # back, empty (moto keeps nothing across a restart): the bucket is made again
        own.s3().create_bucket(Bucket=bucket)
        commit = committer.commit(1, big)
        assert round_count(chain.client, committer.task) == 2
        assert fetch_blob(f"s3://{bucket}/{key}", commit.model_hash) == canonical_bytes(big)
    finally:
        proxy.close()
        own.stop()


def test_dashboard_verifies_rounds_only_in_its_own_buckets(s3: MotoServer, chain: LocalChain) -> None:
    """The verify button reads s3:// with its operator's credentials: inside a bucket prefix it was given
    (--store s3://…) it hashes the blob; a task whose store is another bucket is not fetched."""
    from fl_chain.coordinator.committer import RoundCommitter
    from fl_chain.dashboard.verify import dashboard_policy, verify_round

    bucket = s3.bucket()
    store = open_model_store(f"s3://{bucket}/fed")
    committer = RoundCommitter.new_task(chain.client, chain.coordinator, store, b"\x28" * 32)
    commit = committer.commit(0, _arrays())
    own = verify_round(chain.client, committer.task, 0, dashboard_policy([f"s3://{bucket}/fed"]))
    assert own["status"] == "match" and own["actual"] == "0x" + commit.model_hash.hex()
    other = verify_round(chain.client, committer.task, 0, dashboard_policy([f"s3://{bucket}/elsewhere"]))
    assert other["status"] == "unavailable" and other["refused"]
    assert "not in an s3:// store this reader was given" in other["detail"]
    with pytest.raises(FlchainError, match="--store s3://: expected s3://BUCKET"):
        dashboard_policy(["s3://"])
