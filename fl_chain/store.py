"""ModelStore: content-addressed model blobs.

The canonical form of a model and its hash are protocol/model_bytes.py's (the bytes32 committed
on-chain). Blobs are stored under
that hash (64 lowercase hex digits, no extension), so `blobBase + hex(hash)` is a blob's URI and anyone
can re-hash a downloaded blob. Writes go to a local directory (file://); reads go through
`store_read.fetch` (allowed schemes, file:// only inside a local store such as this process's own
ModelStore, a size cap, streamed) and are always verified against the expected hash.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import canonical_parts, hash_parts, model_hash
from fl_chain.store_read import BlobTooLarge as BlobTooLarge  # re-exported: readers catch it from here
from fl_chain.store_read import allow_local_store, fetch

if TYPE_CHECKING:
    from fl_chain.config import StoreSection


class BlobIntegrityError(FlchainError):
    """A blob's bytes do not hash to the expected model hash."""


UPDATES_DIR = "updates"  # node update blobs of verified rounds (private to the validators)
ROUNDS_DIR = "rounds"  # verified rounds' manifests (public)
MIRRORS_ENV = "FLCHAIN_MIRRORS"  # other stores with copies of the blobs (comma list): the hash decides


def _write_durably(path: Path, blob: bytes | Sequence[bytes | memoryview], mode: int, what: str) -> None:
    """Write `blob` (bytes, or parts written one after the other: a model's canonical parts, streamed
    without joining them) to `path` through a temporary file, fsynced and renamed, with the directory
    fsynced; an existing file is kept (content-addressed names). A one-line error on a full disk or an
    unwritable directory."""
    if path.exists():
        return
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            for part in [blob] if isinstance(blob, bytes) else blob:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise FlchainError(
            f"cannot store {what} in {path.parent}: {exc.strerror or exc} (the round is not committed)"
        ) from None


class BlobStore(Protocol):
    """What a coordinator writes to: a local ModelStore or an S3Store (store_s3.py)."""

    base_uri: str

    def uri_for(self, digest: bytes) -> str:
        """Where a blob with this hash is published."""

    def put(self, blob: bytes) -> tuple[bytes, str]:
        """Store a blob under its hash, durably; (hash, uri)."""

    def put_update(self, blob: bytes | Mapping[str, np.ndarray], digest: bytes | None = None) -> bytes:
        """Store a node's update (bytes or arrays) where only the validators read it; its hash (`digest`
        if given: already computed by this process)."""

    def put_document(self, name: str, blob: bytes) -> str:
        """Store a published document under `rounds/NAME`; its URI."""

    def put_arrays(self, arrays: Mapping[str, np.ndarray], digest: bytes | None = None) -> tuple[bytes, str]:
        """Store named arrays in canonical form; (hash, uri) (`digest` if given: already computed)."""


def is_s3(location: str | Path) -> bool:
    """Whether a store location names an S3 bucket."""
    return str(location).lower().startswith("s3://")


def open_model_store(
    location: str | Path,
    public_base: str | None = None,
    endpoint_url: str | None = None,
    updates: str | None = None,
) -> BlobStore:
    """The store at `location`: an S3Store for s3://BUCKET[/PREFIX] (`endpoint_url` for a non-AWS
    service, `updates` a private prefix or bucket for update blobs), else a local directory."""
    if is_s3(location):
        from fl_chain.store_s3 import S3Store  # s3fs is imported only by a coordinator that uses it

        return S3Store(str(location), public_base, endpoint_url, updates)
    if updates:
        raise FlchainError("[store] updates: a separate updates place is for an s3:// store only")
    return ModelStore(location, public_base)


def store_from_config(section: StoreSection, default_dir: str | Path) -> BlobStore:
    """The store a `[store]` section names (`default_dir` when its dir is empty), HTTP serving aside."""
    return open_model_store(
        section.dir or default_dir,
        section.public_url or None,
        section.endpoint_url or None,
        section.updates or None,
    )


class ModelStore:
    """A directory of blobs named by their hash; this process may read file:// URIs inside it."""

    def __init__(self, directory: str | Path, public_base: str | None = None) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        allow_local_store(self.directory)  # the store this process writes is the one file:// it reads
        self.base_uri = public_base or self.directory.as_uri() + "/"
        if not self.base_uri.endswith("/"):
            self.base_uri += "/"

    def uri_for(self, digest: bytes) -> str:
        """Where a blob with this hash is published."""
        return self.base_uri + digest.hex()

    def put(self, blob: bytes) -> tuple[bytes, str]:
        """Store a blob under its hash, durably: written to a temporary file, fsynced, renamed, and the
        directory fsynced, so a hash that goes on-chain afterwards always names a blob that survives a
        crash. A full disk or an unwritable directory is a one-line error (nothing is committed then).
        Returns (hash, uri)."""
        digest = model_hash(blob)
        _write_durably(self.directory / digest.hex(), blob, 0o644, f"model blob {digest.hex()[:12]}…")
        return digest, self.uri_for(digest)

    def put_update(self, blob: bytes | Mapping[str, np.ndarray], digest: bytes | None = None) -> bytes:
        """Store a node's update (its canonical bytes, or its arrays, streamed in canonical form without
        a copy) under its hash in `updates/`, readable by this machine's owner only (mode 0700/0600, never
        served by flchain's HTTP store): updates reveal more about a node's data than the aggregate does,
        so only the validators are given access (docs/verified-rounds.md). `digest`: the update's hash if
        this process already computed it from the same arrays (it is not computed again)."""
        blob = blob if isinstance(blob, bytes) else canonical_parts(blob)
        digest = digest or (model_hash(blob) if isinstance(blob, bytes) else hash_parts(blob))
        directory = self.updates_directory
        directory.mkdir(mode=0o700, exist_ok=True)
        _write_durably(directory / digest.hex(), blob, 0o600, f"update blob {digest.hex()[:12]}…")
        return digest

    @property
    def updates_directory(self) -> Path:
        """Where this store keeps node update blobs (private)."""
        return self.directory / UPDATES_DIR

    def put_document(self, name: str, blob: bytes) -> str:
        """Store a published document under `rounds/NAME` (public, no arrays: a verified round's manifest,
        a commitment-mode round's outcome leaves, a reputation checkpoint's leaves); returns its URI."""
        directory = self.directory / ROUNDS_DIR
        directory.mkdir(exist_ok=True)
        _write_durably(directory / name, blob, 0o644, f"round manifest {name}")
        return self.base_uri + ROUNDS_DIR + "/" + name

    def put_arrays(self, arrays: Mapping[str, np.ndarray], digest: bytes | None = None) -> tuple[bytes, str]:
        """Store named arrays in canonical form, streamed part by part (no serialised copy of the model);
        return (hash, uri). `digest`: their hash if this process already computed it (not computed again)."""
        parts = canonical_parts(arrays)
        digest = digest or hash_parts(parts)
        _write_durably(self.directory / digest.hex(), parts, 0o644, f"model blob {digest.hex()[:12]}…")
        return digest, self.uri_for(digest)

    def local_path(self, digest: bytes) -> Path:
        """Path of a blob in this store's directory."""
        return self.directory / digest.hex()


def fetch_blob(uri: str, expected: bytes, max_bytes: int | None = None) -> bytes:
    """Read a blob (`store_read.fetch`: checked scheme and place, at most `max_bytes` or the ceiling) and
    verify it hashes to `expected`; a mirror may serve it (`fetch_verified`)."""
    return fetch_verified(uri, expected, max_bytes)[0]


def fetch_verified(uri: str, expected: bytes, max_bytes: int | None = None) -> tuple[bytes, str]:
    """The blob with hash `expected` and the address that served it: `uri`, or if that fails (missing,
    unreachable, refused, other bytes) the first mirror (FLCHAIN_MIRRORS) whose copy hashes right; the
    hash decides, not the address. The error of `uri` if none does."""
    try:
        blob = fetch(uri, max_bytes)
        verify_blob(blob, expected, uri)
        return blob, uri
    except FlchainError:
        for base in mirror_bases():
            with contextlib.suppress(FlchainError):
                blob = fetch(base + expected.hex(), max_bytes)
                verify_blob(blob, expected, base + expected.hex())
                return blob, base + expected.hex()
        raise


def mirror_bases() -> list[str]:
    """The stores FLCHAIN_MIRRORS names (comma list of s3://, http(s):// bases or directories, e.g. a copy
    made by `flchain store sync`) as URI bases; a directory becomes a local store this process reads."""
    bases = []
    for entry in filter(None, (e.strip() for e in os.environ.get(MIRRORS_ENV, "").split(","))):
        if "://" not in entry:
            directory = Path(entry).expanduser().resolve()
            allow_local_store(directory)
            entry = directory.as_uri()
        bases.append(entry if entry.endswith("/") else entry + "/")
    return bases


def read_blob(uri: str, max_bytes: int | None = None, what: str = "model blob") -> bytes:
    """The bytes at `uri`, unverified (`store_read.fetch`); a one-line error if refused, missing,
    unreadable or larger than `max_bytes` (or the ceiling)."""
    return fetch(uri, max_bytes, what)


def verify_blob(blob: bytes, expected: bytes, where: str) -> None:
    """Raise BlobIntegrityError naming the expected and actual hashes if they differ."""
    actual = model_hash(blob)
    if actual != expected:
        raise BlobIntegrityError(
            f"model blob {where} is corrupt or tampered: "
            f"expected hash 0x{expected.hex()}, got 0x{actual.hex()}"
        )
