"""The one way flchain reads a URI it was given by someone else: model blobs, update blobs, manifests,
outcome and checkpoint leaves all come from URIs a coordinator chose, so every read is checked and bounded.

- Schemes: http, https and s3 by default (FLCHAIN_READ_SCHEMES=comma list to change); file:// only inside
  a local store of this process (`allow_local_store`: a ModelStore's own directory, the HOME/store of a
  command), so a reader without a local store refuses every file:// URI.
- Size: each read has a cap (a task's model size where known, else FLCHAIN_MAX_BLOB_BYTES, default 1 GiB;
  documents their fixed caps), read in chunks with a hard stop: "… larger than the N-byte cap".
- s3://: read with s3fs under the standard AWS credential chain and endpoint (AWS_ENDPOINT_URL for a
  non-AWS service), or unsigned with FLCHAIN_S3_ANONYMOUS=1; the object's size is checked before reading.
- Time: a stalled connection gives up after `timeout` seconds, a whole read after `deadline`.
- Addresses (the dashboard's policy, `public_only`; public_hosts.py): a host that resolves to a loopback,
  private or link-local address is refused unless it is the reader's own store; the check is made again
  by the HTTP client's resolver at connect time (DNS rebinding) and redirects are not followed; s3:// is
  read only inside the reader's own buckets (`s3_stores`), since it signs with its operator's credentials.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from fl_chain.errors import FlchainError
from fl_chain.public_hosts import PublicClient, non_public

DEFAULT_SCHEMES = ("http", "https", "s3")
KNOWN_SCHEMES = ("http", "https", "s3", "gs", "gcs", "az", "abfs")  # what fsspec can read without a server
DEFAULT_MAX_BYTES = 1024**3
SCHEMES_ENV = "FLCHAIN_READ_SCHEMES"
MAX_BYTES_ENV = "FLCHAIN_MAX_BLOB_BYTES"
S3_ANONYMOUS_ENV = "FLCHAIN_S3_ANONYMOUS"
S3_ATTEMPTS = 3  # botocore's attempts per S3 request (standard mode: exponential backoff with jitter)
MODEL_SIZE_MARGIN = 2  # every round of a task has the size of its round 0: twice that is plenty
CHUNK = 1024 * 1024


class BlobTooLarge(FlchainError):
    """A blob is larger than the reader accepts."""


class ReadRefused(FlchainError):
    """A URI this reader does not fetch: its scheme, its place or its address."""


@dataclass(frozen=True)
class ReadPolicy:
    """What a reader fetches: schemes, local store directories, the size ceiling, time limits and, for a
    reader acting for someone else (the dashboard), public addresses only."""

    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    local_stores: tuple[Path, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = 30.0  # connect, and the longest silence while reading
    deadline: float = 600.0  # the whole read
    public_only: bool = False
    trusted_hosts: tuple[str, ...] = ()  # host:port exempt from public_only (own store)
    s3_stores: tuple[str, ...] = ()  # s3://bucket/prefix/ a public_only reader may read (its own stores)


def with_stores(policy: ReadPolicy, stores: tuple[Path, ...]) -> ReadPolicy:
    """`policy` with these local store directories (resolved)."""
    return replace(policy, local_stores=tuple(Path(s).expanduser().resolve() for s in stores))


_local_stores: set[Path] = set()
_model_sizes: dict[object, int] = {}
_s3_filesystems: dict[tuple, Any] = {}
_s3_endpoint: list[str | None] = [None]  # this process's own store's endpoint ([store] endpoint_url)
_lock = threading.Lock()


def allow_local_store(directory: str | Path) -> None:
    """Let this process read file:// URIs inside `directory` (its own store)."""
    with _lock:
        _local_stores.add(Path(directory).expanduser().resolve())


def use_s3_endpoint(endpoint_url: str | None) -> None:
    """Read s3:// in this process from `endpoint_url` (its own store's S3-compatible service, from
    `[store] endpoint_url`) rather than AWS_ENDPOINT_URL or AWS."""
    with _lock:
        _s3_endpoint[0] = endpoint_url or None


def process_policy() -> ReadPolicy:
    """This process's policy: the environment's schemes and size ceiling, its local stores."""
    schemes = DEFAULT_SCHEMES
    if os.environ.get(SCHEMES_ENV, "").strip():
        schemes = tuple(s.strip().lower() for s in os.environ[SCHEMES_ENV].split(",") if s.strip())
        unknown = [s for s in schemes if s not in KNOWN_SCHEMES]
        if unknown:
            known = ", ".join(KNOWN_SCHEMES)
            raise FlchainError(f"{SCHEMES_ENV}: unknown scheme {unknown[0]!r} (known: {known})")
    max_bytes = DEFAULT_MAX_BYTES
    if os.environ.get(MAX_BYTES_ENV, "").strip():
        try:
            max_bytes = int(os.environ[MAX_BYTES_ENV])
        except ValueError:
            max_bytes = 0
        if max_bytes <= 0:
            given = os.environ[MAX_BYTES_ENV]
            raise FlchainError(f"{MAX_BYTES_ENV}={given!r}: expected a positive number of bytes")
    with _lock:
        stores = tuple(sorted(_local_stores))
    return ReadPolicy(schemes=schemes, local_stores=stores, max_bytes=max_bytes)


def model_cap(key: object, policy: ReadPolicy | None = None) -> int:
    """The cap for a model blob of the task `key` names: a verified blob of the task seen before, times
    MODEL_SIZE_MARGIN, within the policy's ceiling; the ceiling while the task's size is unknown."""
    ceiling = (policy or process_policy()).max_bytes
    with _lock:
        known = _model_sizes.get(key)
    return ceiling if known is None else min(ceiling, MODEL_SIZE_MARGIN * known + CHUNK)


def remember_model_size(key: object, size: int) -> None:
    """Record the size of a verified model blob of the task `key` names (see model_cap)."""
    with _lock:
        _model_sizes[key] = size


def fetch(
    uri: str, max_bytes: int | None = None, what: str = "model blob", policy: ReadPolicy | None = None
) -> bytes:
    """The bytes at `uri`, unverified, read under `policy` (default: this process's): ReadRefused for a
    URI it does not fetch, BlobTooLarge past min(max_bytes, the ceiling), else a one-line FlchainError
    if missing or unreadable."""
    policy = policy or process_policy()
    cap = policy.max_bytes if max_bytes is None else min(max_bytes, policy.max_bytes)
    scheme = urlparse(uri).scheme.lower() or "file"
    if scheme == "file":
        return _read_file(_local_path(uri, what, policy), uri, cap, what, policy)
    if scheme not in policy.schemes:
        allowed = ", ".join(policy.schemes)
        raise ReadRefused(f"{what} {uri}: scheme {scheme!r} is not read here (allowed: {allowed})")
    if policy.public_only and scheme in ("http", "https"):
        _require_public(uri, what, policy)
    if policy.public_only and scheme == "s3" and not any(uri.startswith(b) for b in policy.s3_stores):
        # it would read with its operator's credentials, on someone else's behalf: its own stores only
        raise ReadRefused(f"{what} {uri}: not in an s3:// store this reader was given; not fetched")
    return _read_remote(uri, scheme, cap, what, policy)


def _local_path(uri: str, what: str, policy: ReadPolicy) -> Path:
    """The file a file:// URI names, resolved (symlinks followed), if it lies inside a local store."""
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise ReadRefused(f"{what} {uri}: a file:// URI on another host is not read")
    if not policy.local_stores:
        raise ReadRefused(f"{what} {uri}: file:// is read only inside a local store; this reader has none")
    path = Path(unquote(parsed.path)).resolve()
    if not any(path.is_relative_to(store) for store in policy.local_stores):
        shown = [str(s) for s in policy.local_stores[:2]]
        more = len(policy.local_stores) - len(shown)
        stores = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        raise ReadRefused(f"{what} {uri}: outside the local store ({stores}); not read")
    return path


def _read_file(path: Path, uri: str, cap: int, what: str, policy: ReadPolicy) -> bytes:
    """A regular file's bytes, at most `cap` of them (a device, pipe or directory is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        raise FlchainError(f"{what} {uri} not found") from None
    except OSError as exc:
        raise FlchainError(f"cannot read {what} {uri}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ReadRefused(f"{what} {uri}: not a regular file; not read")
        if info.st_size > cap:
            raise BlobTooLarge(f"{what} {uri} is larger than the {cap}-byte cap ({info.st_size} bytes)")
        return _read_capped(fh, uri, cap, what, policy)


def _read_capped(fh, uri: str, cap: int, what: str, policy: ReadPolicy) -> bytes:
    """Read `fh` in chunks until it ends; BlobTooLarge as soon as it passes `cap` bytes, a one-line error
    once the read has taken longer than the policy's deadline."""
    out = bytearray()
    stop_at = time.monotonic() + policy.deadline
    while True:
        chunk = fh.read(min(CHUNK, cap + 1 - len(out)))
        if not chunk:
            return bytes(out)
        out += chunk
        if len(out) > cap:
            raise BlobTooLarge(f"{what} {uri} is larger than the {cap}-byte cap")
        if time.monotonic() > stop_at:
            raise FlchainError(f"cannot read {what} {uri}: not done after {policy.deadline:.0f} s")


def _read_remote(uri: str, scheme: str, cap: int, what: str, policy: ReadPolicy) -> bytes:
    """Stream a remote URI through fsspec, bounded by `cap`."""
    try:
        with _open_remote(uri, scheme, policy) as fh:
            size = getattr(fh, "size", None)  # known from the HEAD an S3 open makes: refuse before reading
            if isinstance(size, int) and size > cap:
                raise BlobTooLarge(f"{what} {uri} is larger than the {cap}-byte cap ({size} bytes)")
            return _read_capped(fh, uri, cap, what, policy)
    except FlchainError:
        raise
    except FileNotFoundError as exc:
        cause = exc.__cause__  # fsspec reports any failed HTTP probe as not found: say which it was
        if scheme == "s3" or cause is None or getattr(cause, "status", None) in (404, 410):
            raise FlchainError(f"{what} {uri} not found") from None
        raise FlchainError(_cannot_read(what, uri, cause)) from None
    except Exception as exc:
        raise FlchainError(_cannot_read(what, uri, exc)) from None


def _s3_retries() -> dict:
    """botocore's retry setting: AWS_MAX_ATTEMPTS (and AWS_RETRY_MODE) if the environment sets them,
    else S3_ATTEMPTS attempts in standard mode."""
    if os.environ.get("AWS_MAX_ATTEMPTS", "").strip():
        return {}
    return {"retries": {"max_attempts": S3_ATTEMPTS, "mode": "standard"}}


def _open_remote(uri: str, scheme: str, policy: ReadPolicy) -> Any:
    """An open binary file for a remote URI: s3fs for s3:// (see s3_filesystem), fsspec otherwise."""
    import fsspec  # imported here: the flchain mod hashes arrays in every app process and seldom reads

    if scheme == "s3":
        anon = os.environ.get(S3_ANONYMOUS_ENV, "").strip().lower() in ("1", "true", "yes")
        with _lock:
            endpoint = _s3_endpoint[0]
        return s3_filesystem(endpoint, policy.timeout, anon).open(uri, "rb")
    options = _http_options(policy) if scheme in ("http", "https") else {}
    return fsspec.open(uri, "rb", **options)


def _cannot_read(what: str, uri: str, exc: BaseException) -> str:
    """One line naming what could not be read and why."""
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return f"cannot read {what} {uri}: {type(exc).__name__}: {detail}".rstrip(": ")


def check_s3_uri(uri: str, what: str) -> str:
    """`uri` as an s3:// base ending in "/"; a one-line error naming `what` if it has no bucket or carries
    a credential (the base goes on-chain)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise FlchainError(f"{what}: expected s3://BUCKET[/PREFIX], got {uri!r}")
    if "@" in parsed.netloc or parsed.query or parsed.fragment:
        raise FlchainError(f"{what}: an s3:// store address carries no credential, query or fragment")
    return uri if uri.endswith("/") else uri + "/"


def s3_filesystem(endpoint_url: str | None = None, timeout: float = 30.0, anon: bool = False) -> Any:
    """An s3fs filesystem: the standard AWS credential chain and endpoint (AWS_ENDPOINT_URL, or
    `endpoint_url`), or unsigned requests to a public bucket (`anon`); `timeout` for connecting and each
    read; one retry layer (botocore's, `_s3_retries`: s3fs's own would multiply them, so a dead endpoint
    fails in seconds); 1 MiB read blocks (the cap is checked per chunk); no listings cache. One per
    process, settings and AWS environment (a client costs ~0.1-0.3 s to make; another key is another)."""
    aws = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (os.getpid(), endpoint_url, timeout, anon, aws)
    with _lock:
        fs = _s3_filesystems.get(key)
    if fs is None:
        fs = _new_s3_filesystem(endpoint_url, timeout, anon)
        with _lock:
            _s3_filesystems[key] = fs
    return fs


def _new_s3_filesystem(endpoint_url: str | None, timeout: float, anon: bool) -> Any:
    """A new s3fs filesystem (see s3_filesystem)."""
    from fl_chain.extras import require_extra

    require_extra("s3", "an s3:// store")
    import s3fs

    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint_url or None,
        anon=anon,
        skip_instance_cache=True,
        use_listings_cache=False,
        default_block_size=CHUNK,
        config_kwargs={"connect_timeout": timeout, "read_timeout": timeout, **_s3_retries()},
    )
    fs.retries = 1  # s3fs's retry loop around botocore's (a class attribute, not an argument)
    return fs


def _http_options(policy: ReadPolicy) -> dict:
    """fsspec HTTP options: a streamed body (block_size 0: no range requests that read a whole reply),
    no decompression (no zip bombs), the policy's timeouts; public_only: no redirects, checked resolver."""
    import aiohttp

    options = {
        "block_size": 0,
        "headers": {"Accept-Encoding": "identity"},
        "client_kwargs": {
            "timeout": aiohttp.ClientTimeout(
                total=policy.deadline, sock_connect=policy.timeout, sock_read=policy.timeout
            ),
            "auto_decompress": False,
        },
    }
    if policy.public_only:
        options.update(allow_redirects=False, get_client=PublicClient(policy.trusted_hosts))
        options["skip_instance_cache"] = True
    return options


def _require_public(uri: str, what: str, policy: ReadPolicy) -> None:
    """ReadRefused if the URI's host is not public and not trusted (public_hosts.non_public)."""
    refusal = non_public(uri, what, policy.trusted_hosts)
    if refusal is not None:
        raise ReadRefused(refusal)
