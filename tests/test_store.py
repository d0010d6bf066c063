"""ModelStore: canonical bytes and hash, verified reads (file and HTTP), tampered blobs refused."""

from __future__ import annotations

import hashlib
import http.client
import os
from pathlib import Path

import numpy as np
import pytest
import requests

from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task, load_model, verify_model
from fl_chain.chain.ledger import round_count as ledger_round_count_of
from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import (
    HashPool,
    HashSpans,
    arrays_from_bytes,
    canonical_bytes,
    canonical_parts,
    canonical_size,
    hash_arrays,
    hash_many,
    union_seconds,
)
from fl_chain.store import BlobIntegrityError, ModelStore, fetch_blob
from fl_chain.store_http import BlobServer
from fl_chain.wire.records import arrays_to_record, record_views
from tests.chainutil import LocalChain


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"layer.weight": rng.normal(size=(4, 3)).astype(np.float32), "layer.bias": np.zeros(4, np.float32)}


def test_hash_is_sha256_of_canonical_safetensors_and_deterministic() -> None:
    a = _arrays()
    reordered = dict(reversed(list(a.items())))
    assert canonical_bytes(a) == canonical_bytes(reordered)
    assert hash_arrays(a) == hashlib.sha256(canonical_bytes(a)).digest()
    assert hash_arrays(a) != hash_arrays(_arrays(1))
    restored = arrays_from_bytes(canonical_bytes(a))
    assert all(np.array_equal(restored[k], v) and restored[k].dtype == v.dtype for k, v in a.items())


DTYPES = ("?", "u1", "i1", "i2", "u2", "f2", "i4", "u4", "f4", "f8", "i8", "u8")


def test_canonical_parts_are_exactly_safetensors_bytes_and_hash_alike(tmp_path: Path) -> None:
    """The header flchain builds to hash and store without a copy is byte for byte safetensors' (every
    numpy dtype safetensors orders, empty, 0-d, strided and Fortran arrays); what it cannot build
    (non-ASCII names, big-endian arrays) takes safetensors' own bytes. Hashes and stored blobs agree."""
    rng = np.random.default_rng(5)
    cases: list[dict[str, np.ndarray]] = [{}]
    for trial in range(60):
        names = rng.choice(["w", "b", "layer.0.weight", "Z", "a b", "x_1"], size=rng.integers(1, 6))
        cases.append(
            {
                f"{n}{i}": (rng.normal(size=tuple(rng.integers(0, 4, size=rng.integers(0, 4)))) * 9).astype(
                    DTYPES[(trial + i) % len(DTYPES)]
                )
                for i, n in enumerate(names)
            }
        )
    cases += [
        {"f": np.asfortranarray(np.ones((3, 2), np.float32)), "s": np.arange(12, dtype=np.float32)[::2]},
        {"poids.é": np.ones(2, np.float32)},
        {"big": np.arange(3, dtype=">f4"), "w": np.ones(1)},
    ]
    store = ModelStore(tmp_path / "store")
    for arrays in cases:
        blob = canonical_bytes(arrays)
        assert b"".join(bytes(part) for part in canonical_parts(arrays)) == blob, arrays
        assert canonical_size(arrays) == len(blob)
        assert hash_arrays(arrays) == hashlib.sha256(blob).digest()
        digest, _ = store.put_arrays(arrays)
        assert store.local_path(digest).read_bytes() == blob
    assert hash_many(cases) == [hashlib.sha256(canonical_bytes(a)).digest() for a in cases]
    pool = HashPool()  # the coordinator's: each update hashed in the background as it is checked
    futures = [pool.submit(a) for a in cases]
    assert pool.close() >= 0.0
    assert [f.result() for f in futures] == [hashlib.sha256(canonical_bytes(a)).digest() for a in cases]
    assert HashPool().close() == 0.0  # nothing submitted
    # hashes that overlap count once, the wait between two replies not at all
    assert union_seconds([(0.0, 1.0), (0.5, 2.0), (3.0, 4.0)]) == 3.0
    assert union_seconds([(0.0, 5.0), (1.0, 2.0)]) == 5.0 and union_seconds([]) == 0.0
    shared = HashSpans()  # the early checks' hashes and screening's, reported together
    shared.hash(cases[0])
    joined = HashPool(shared)
    joined.submit(cases[1]).result()
    assert joined.close() == shared.seconds() > 0.0
    # CPU time of the hashing threads: a hash's CPU fits inside its span (a span may also hold waits)
    alone = HashSpans()
    assert alone.cpu_seconds() == 0.0
    alone.hash({"w": np.ones(4_000_000, np.float32)})
    assert 0.0 < alone.cpu_seconds() <= alone.seconds() + 0.01
    failing = HashPool()
    broken = failing.submit({"w": object()})  # a failure comes back through its own future only
    failing.close()
    with pytest.raises(Exception):  # noqa: B017 - whatever the array library raises
        broken.result()
    # A node reads the arrays of a Flower message as views of the message's bytes (no copy): same hash.
    for arrays in cases:
        views = record_views(arrays_to_record(arrays))
        assert hash_arrays(views) == hash_arrays(arrays)
        assert not any(v.flags.writeable for v in views.values())


def test_store_put_and_verified_reads(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    digest, uri = store.put_arrays(_arrays())
    assert uri == (tmp_path / "store").resolve().as_uri() + "/" + digest.hex()
    assert fetch_blob(uri, digest) == canonical_bytes(_arrays())
    with pytest.raises(BlobIntegrityError, match="expected hash 0x"):
        fetch_blob(uri, b"\x01" * 32)
    with pytest.raises(FlchainError, match="not found"):
        fetch_blob(store.uri_for(b"\x02" * 32), b"\x02" * 32)


def test_http_server_serves_blobs_only(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    digest, _ = store.put_arrays(_arrays())
    (tmp_path / "store" / "secret.txt").write_text("not a blob")
    server = BlobServer(tmp_path / "store").start()
    try:
        base = f"http://127.0.0.1:{server.port}/"
        assert fetch_blob(base + digest.hex(), digest) == canonical_bytes(_arrays())
        assert requests.get(base, timeout=5).status_code == 404  # no listing
        assert requests.get(base + "secret.txt", timeout=5).status_code == 404
        raw = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        raw.request("GET", "/../" + digest.hex())  # sent as is, unlike requests which normalises it
        assert raw.getresponse().status == 404
        # A verified round's manifest is public; node update blobs (for the validators only) never are.
        store = ModelStore(tmp_path / "store")
        name = f"t1-r2-{'ab' * 32}.json"
        manifest_uri = store.put_document(name, b'{"version": 1}')
        assert manifest_uri == store.base_uri + "rounds/" + name
        assert requests.get(base + "rounds/" + name, timeout=5).content == b'{"version": 1}'
        update = store.put_update(_arrays(3))  # streamed from the arrays, no serialised copy
        assert (store.updates_directory / update.hex()).read_bytes() == canonical_bytes(_arrays(3))
        assert (store.updates_directory / update.hex()).stat().st_mode & 0o777 == 0o600
        assert store.updates_directory.stat().st_mode & 0o777 == 0o700
        for path in ("updates/" + update.hex(), update.hex(), "rounds/../updates/" + update.hex()):
            assert requests.get(base + path, timeout=5).status_code == 404, path
    finally:
        server.stop()


def test_client_refuses_tampered_blob_and_mismatched_model(chain: LocalChain, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    digest, _ = store.put_arrays(_arrays())
    client = chain.client
    task = create_task(client, chain.coordinator, b"\x05" * 32, store.base_uri)
    commit_round(client, chain.coordinator, task, 0, digest, "", ZERO_HASH, {})
    loaded = load_model(client, task, 0)[1]
    assert hash_arrays(loaded) == digest
    verify_model(client, task, 0, _arrays())

    blob = store.local_path(digest)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(BlobIntegrityError) as info:
        load_model(client, task, 0)[1]
    assert f"expected hash 0x{digest.hex()}" in str(info.value)
    assert f"got 0x{hashlib.sha256(bytes(data)).hexdigest()}" in str(info.value)
    with pytest.raises(FlchainError, match=r"does not match round 0 .* expected hash 0x"):
        verify_model(client, task, 0, _arrays(1))


def test_a_full_disk_commits_nothing_and_leaves_no_partial_blob(
    chain: LocalChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob is fsynced before its hash goes on-chain; when the disk is full (ENOSPC injected at the
    fsync, as a full filesystem reports delayed allocation), the round is not committed, the error names
    the store, and once space is back the same round commits."""
    import errno

    from fl_chain.coordinator.committer import RoundCommitter

    store = ModelStore(tmp_path / "store")
    committer = RoundCommitter.new_task(chain.client, chain.coordinator, store, b"\x06" * 32)
    committer.commit(0, _arrays())
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(
        FlchainError, match=rf"cannot store model blob .* in {store.directory}: No space left"
    ):
        committer.commit(1, _arrays(1))
    assert ledger_round_count_of(chain.client, committer.task) == 1  # round 0 only
    assert sorted(p.name for p in store.directory.iterdir()) == [hash_arrays(_arrays()).hex()]
    monkeypatch.setattr(os, "fsync", real_fsync)
    committer.commit(1, _arrays(1))
    assert ledger_round_count_of(chain.client, committer.task) == 2


@pytest.fixture()
def small_filesystem(tmp_path: Path) -> Path:
    """A 256 KiB tmpfs (a real filesystem that fills up and can be made read-only), unmounted after."""
    import subprocess

    mount_point = tmp_path / "small"
    mount_point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:  # needs root with CAP_SYS_ADMIN; the ENOSPC test above runs everywhere
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def test_a_really_full_or_read_only_filesystem_commits_nothing(
    chain: LocalChain, small_filesystem: Path
) -> None:
    """On a real 256 KiB filesystem: a model that does not fit is a one-line error naming the store and
    nothing is committed or left behind; remounted read-only, the same; with space back, it commits."""
    import subprocess

    from fl_chain.coordinator.committer import RoundCommitter

    store = ModelStore(small_filesystem / "store")
    committer = RoundCommitter.new_task(chain.client, chain.coordinator, store, b"\x08" * 32)
    committer.commit(0, _arrays())
    too_big = {"w": np.ones((400, 400), np.float32)}  # 640 kB
    with pytest.raises(
        FlchainError, match=rf"cannot store model blob .* in {store.directory}: No space left"
    ):
        committer.commit(1, too_big)
    assert ledger_round_count_of(chain.client, committer.task) == 1
    assert len(list(store.directory.iterdir())) == 1  # round 0's blob only, no partial file
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    with pytest.raises(FlchainError, match=rf"in {store.directory}: Read-only file system"):
        committer.commit(1, _arrays(1))
    assert ledger_round_count_of(chain.client, committer.task) == 1
    subprocess.run(["mount", "-o", "remount,rw,size=2m", str(small_filesystem)], check=True)
    committer.commit(1, too_big)
    assert ledger_round_count_of(chain.client, committer.task) == 2


def test_every_store_takes_the_same_calls() -> None:
    """The coordinator calls a BlobStore without knowing which: ModelStore and S3Store take the same
    arguments for every write (a signature drift broke S3 commits once)."""
    import inspect

    from fl_chain.store import BlobStore, ModelStore
    from fl_chain.store_s3 import S3Store

    for name in ("uri_for", "put", "put_update", "put_document", "put_arrays"):
        expected = list(inspect.signature(getattr(BlobStore, name)).parameters)
        assert list(inspect.signature(getattr(ModelStore, name)).parameters) == expected, name
        assert list(inspect.signature(getattr(S3Store, name)).parameters) == expected, name
