"""S3Store: the content-addressed store on an S3-compatible bucket (`[store] dir = "s3://bucket/prefix"`).

The same layout as a local ModelStore: model blobs at `<prefix>/<hash hex>`, published documents at
`<prefix>/rounds/<name>`, node update blobs at `<prefix>/updates/<hash hex>` or under `[store] updates`
(a prefix or bucket that nodes cannot read: docs/storage-s3.md). Writes go through s3fs with the
standard AWS credential chain (environment variables, profile) and `endpoint_url` for a non-AWS service.

Why no temporary key and rename: an S3 PUT (and a multipart upload, which s3fs uses past its 50 MB
chunk) makes an object visible only once the whole of it has arrived and is stored durably; an upload
cut short leaves no object under its key (an unfinished multipart upload is invisible and aborted). So
the final hash key is written directly, and a hash goes on-chain only after that PUT has succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import canonical_bytes, model_hash
from fl_chain.store_read import check_s3_uri, s3_filesystem, use_s3_endpoint


def s3_reason(exc: BaseException) -> str:
    """The first line of an S3 error, for a one-line message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")


class S3Store:
    """Blobs named by their hash in an S3 bucket (see the module docstring)."""

    def __init__(
        self,
        base: str,
        public_base: str | None = None,
        endpoint_url: str | None = None,
        updates: str | None = None,
    ) -> None:
        self.location = check_s3_uri(base, "[store] dir")
        self.updates_base = check_s3_uri(updates, "[store] updates") if updates else None
        self.updates_base = self.updates_base or self.location + "updates/"
        self.base_uri = public_base or self.location
        if not self.base_uri.endswith("/"):
            self.base_uri += "/"
        self.fs = s3_filesystem(endpoint_url)
        if endpoint_url:
            use_s3_endpoint(endpoint_url)  # this process reads its store where it writes it

    def uri_for(self, digest: bytes) -> str:
        """Where a blob with this hash is published."""
        return self.base_uri + digest.hex()

    def put(self, blob: bytes) -> tuple[bytes, str]:
        """Store a blob under its hash (one PUT: complete or absent); returns (hash, uri)."""
        digest = model_hash(blob)
        self._write(self.location + digest.hex(), blob, f"model blob {digest.hex()[:12]}…")
        return digest, self.uri_for(digest)

    def put_update(self, blob: bytes | Mapping[str, np.ndarray], digest: bytes | None = None) -> bytes:
        """Store a node's update (its canonical bytes or its arrays) under its hash in the private updates
        prefix or bucket; `digest`: its hash if this process already computed it (not computed again)."""
        blob = blob if isinstance(blob, bytes) else canonical_bytes(blob)  # one PUT takes whole bytes
        digest = digest or model_hash(blob)
        self._write(self.updates_base + digest.hex(), blob, f"update blob {digest.hex()[:12]}…")
        return digest

    def put_document(self, name: str, blob: bytes) -> str:
        """Store a published document under `rounds/NAME`; returns its URI."""
        from fl_chain.store import ROUNDS_DIR

        self._write(self.location + ROUNDS_DIR + "/" + name, blob, f"round manifest {name}")
        return self.base_uri + ROUNDS_DIR + "/" + name

    def put_arrays(self, arrays: Mapping[str, np.ndarray], digest: bytes | None = None) -> tuple[bytes, str]:
        """Store named arrays in canonical form; return (hash, uri). `digest`: their hash if this process
        already computed it (not computed again)."""
        blob = canonical_bytes(arrays)
        digest = digest or model_hash(blob)
        self._write(self.location + digest.hex(), blob, f"model blob {digest.hex()[:12]}…")
        return digest, self.uri_for(digest)

    def _present(self, path: str) -> bool:
        """Whether an object is at `path` (one HEAD; a key that may not list the bucket is told 403 for a
        missing object: then the PUT decides)."""
        bucket, key = path.split("/", 1)
        try:
            self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        except (FileNotFoundError, PermissionError):
            return False
        return True

    def _write(self, uri: str, blob: bytes, what: str) -> None:
        """PUT `blob` at `uri` unless an object is there already (names are hashes: the same bytes); a
        one-line error if the bucket cannot be reached or refuses it (nothing is committed then)."""
        path = uri.removeprefix("s3://")
        try:
            if self._present(path):
                return
            self.fs.pipe_file(path, blob)
        except Exception as exc:
            raise FlchainError(
                f"cannot store {what} in {self.location}: {s3_reason(exc)} (the round is not committed)"
            ) from None
