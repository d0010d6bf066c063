"""Reads of coordinator-chosen URIs are checked and bounded (issue 23, point 4): a round URI of
file:///dev/zero, a huge file, an endless HTTP body, another scheme or a file outside the reader's store
end in one line, never in a reader that runs out of memory. The readers that exhaust memory on the old
code run as real `flchain pull` / `flchain audit` processes under a memory limit, so the test is safe."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task
from fl_chain.errors import FlchainError
from fl_chain.store import ModelStore, fetch_blob
from tests.canary import canary
from tests.chainutil import LocalChain, home_with_deployment

MEMORY_LIMIT = 1536 * 1024**2  # the reader process's address space: the old code ran into it


def _flchain(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `flchain ARGS` in a child with a memory limit (killed after 120 s if it hangs)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "fl_chain", *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
        check=False,
    )


def _one_line(done: subprocess.CompletedProcess, *parts: str) -> None:
    err = done.stderr.strip()
    assert done.returncode == 1, (done.returncode, err[-2000:])
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err[-2000:]
    for part in parts:
        assert part in err, err


def _task_with_rounds(chain: LocalChain, store: ModelStore, uris: list[str]) -> int:
    """A task whose round 0 is a real blob in `store` and whose later rounds name `uris`."""
    client = chain.client
    task = create_task(client, chain.coordinator, b"\x0b" * 32, store.base_uri)
    parent, _ = store.put_arrays({"w": np.zeros(4, np.float32)})
    commit_round(client, chain.coordinator, task, 0, parent, "", ZERO_HASH, {})
    for rnd, uri in enumerate(uris, start=1):
        digest = bytes([rnd]) * 32
        commit_round(client, chain.coordinator, task, rnd, digest, uri, parent, {})
        parent = digest
    return task


def test_dev_zero_and_a_huge_file_end_in_one_line(chain: LocalChain, tmp_path: Path) -> None:
    """A round URI of file:///dev/zero is refused (outside the reader's store, and no regular file); a
    5 GiB (sparse) blob inside the store stops at the cap; `pull` and `audit` both say so in one line.
    The old code read both until the reader ran out of memory."""
    home = home_with_deployment(chain, tmp_path)
    store = ModelStore(home / "store")  # the reader's own store: HOME/store
    huge = store.directory / ("ee" * 32)
    with open(huge, "wb") as fh:
        fh.truncate(5 * 1024**3)
    zero_task = _task_with_rounds(chain, store, ["file:///dev/zero"])
    huge_task = _task_with_rounds(chain, store, [huge.as_uri()])
    out = ["--out", str(tmp_path / "model.safetensors"), "--home", str(home)]

    zero = _flchain(["pull", "--task", str(zero_task), *out])
    _one_line(zero, "model blob file:///dev/zero: outside the local store")
    big = _flchain(["pull", "--task", str(huge_task), *out])
    _one_line(big, f"model blob {huge.as_uri()} is larger than the 1073741824-byte cap")
    assert not (tmp_path / "model.safetensors").exists()
    audit = _flchain(["audit", "--task", str(zero_task), "--home", str(home)])
    _one_line(audit, "audit found 1 discrepancies", f"task {zero_task} round 1 blob")
    assert "outside the local store" in " ".join(audit.stdout.split()), audit.stdout


@contextmanager
def endless_http() -> Iterator[str]:
    """A server on 127.0.0.1 whose every GET is an endless body (no length): its base URL."""

    class Endless(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except OSError:  # the reader hung up
                pass

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_an_endless_http_body_stops_at_the_cap(chain: LocalChain, tmp_path: Path) -> None:
    """`flchain pull` of a round whose URI streams forever stops at the cap (FLCHAIN_MAX_BLOB_BYTES)
    with one line; the old code read until the process ran out of memory."""
    home = home_with_deployment(chain, tmp_path)
    store = ModelStore(home / "store")
    cap = 8 * 1024**2
    with endless_http() as base:
        task = _task_with_rounds(chain, store, [base + "ab" * 32])
        done = _flchain(
            ["pull", "--task", str(task), "--out", str(tmp_path / "m"), "--home", str(home)],
            {"FLCHAIN_MAX_BLOB_BYTES": str(cap)},
        )
    _one_line(done, base + "ab" * 32, f"larger than the {cap}-byte cap")


def test_other_schemes_and_files_outside_the_store_are_refused(tmp_path: Path) -> None:
    """ftp:// is no scheme a reader fetches; a file outside the reader's store is not read (the old code
    read /etc/passwd and reported only that its hash differs); a reader without a store reads no file."""
    store = ModelStore(tmp_path / "store")
    digest, uri = store.put_arrays({"w": np.ones(2, np.float32)})
    assert fetch_blob(uri, digest)  # the store itself: read as before
    with pytest.raises(FlchainError, match=r"scheme 'ftp' is not read here \(allowed: http, https, s3\)"):
        fetch_blob("ftp://127.0.0.1:1/" + digest.hex(), digest)
    with pytest.raises(FlchainError, match="file:///etc/passwd: outside the local store"):
        fetch_blob("file:///etc/passwd", digest)
    with pytest.raises(FlchainError, match="outside the local store"):
        fetch_blob(uri.replace(digest.hex(), "../" + digest.hex()), digest)
    os.symlink("/etc/passwd", store.directory / ("cd" * 32))  # a link out of the store is outside too
    with pytest.raises(FlchainError, match="outside the local store"):
        fetch_blob((store.directory / ("cd" * 32)).as_uri(), digest)
    from fl_chain.store_read import ReadPolicy, fetch

    with pytest.raises(FlchainError, match="file:// is read only inside a local store; this reader has none"):
        fetch(uri, policy=ReadPolicy())


def test_a_name_that_turns_private_at_connect_time_is_not_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's reads check a host's addresses before the request and again in the HTTP client's
    resolver: a name that passed the first check (DNS rebinding) still does not reach a loopback server."""
    from fl_chain import store_read
    from fl_chain.store_read import ReadPolicy, fetch

    with canary(b"ok") as (_, port, hits):
        url = f"http://localhost:{port}/x"
        public_only = ReadPolicy(schemes=("http",), public_only=True)
        with pytest.raises(FlchainError, match=r"localhost \(.*\) is a loopback address; not fetched"):
            fetch(url, policy=public_only)
        monkeypatch.setattr(store_read, "_require_public", lambda uri, what, policy: None)  # rebinding
        with pytest.raises(FlchainError, match="cannot read model blob"):
            fetch(url, policy=public_only)
        assert hits == []
        trusted = ReadPolicy(schemes=("http",), public_only=True, trusted_hosts=(f"localhost:{port}",))
        assert fetch(url, policy=trusted) == b"ok" and hits  # the reader's own store is reached
