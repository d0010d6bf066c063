"""Re-hash a round's blob and compare it with the hash on-chain, for the dashboard's verify button.

The URI comes from the chain and is attacker-controlled (the task owner chose the blob base, the
coordinator the URI), and the dashboard fetches it on its viewer's behalf, so a URI is fetched only if:
it lies in the task's own store (same scheme and host as the task's blob base, inside its directory),
its scheme is http, https, file or s3, a file lies inside this dashboard's own store (HOME/store, --store
DIR), an HTTP host is a public address unless it is this dashboard's own store (--store URL), and an s3://
URI lies in a bucket prefix this dashboard was given (--store s3://BUCKET/PREFIX: it reads with its
operator's AWS credentials, so never a bucket a task owner chose). The read
itself is `store_read.fetch`: streamed, capped, with a timeout. Anything else is reported, never fetched.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from fl_chain.chain import ledger
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import model_hash
from fl_chain.store_read import (
    ReadPolicy,
    ReadRefused,
    check_s3_uri,
    fetch,
    model_cap,
    process_policy,
    remember_model_size,
    with_stores,
)

FETCHED_SCHEMES = ("file", "http", "https", "s3")


def dashboard_policy(stores: list[str | Path]) -> ReadPolicy:
    """What the verify button may read: http(s) at public addresses, and this dashboard's own stores
    (directories: file:// inside them; http(s) URLs: that host and port even if it is private; s3:// bucket
    prefixes: objects inside them, read with the environment's AWS credentials)."""
    directories, hosts, buckets = [], [], []
    for store in stores:
        parsed = urlparse(str(store))
        if parsed.scheme in ("http", "https"):
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            hosts.append(f"{(parsed.hostname or '').lower()}:{port}")
        elif parsed.scheme == "s3":
            buckets.append(check_s3_uri(str(store), f"--store {store}"))
        elif parsed.scheme in ("", "file"):
            directories.append(Path(unquote(parsed.path)))
        else:
            raise FlchainError(
                f"--store {store}: expected a directory, an http(s):// URL or s3://BUCKET/PREFIX"
            )
    policy = replace(process_policy(), schemes=("http", "https", "s3"), public_only=True)
    policy = replace(policy, trusted_hosts=tuple(hosts), s3_stores=tuple(buckets))
    return with_stores(policy, tuple(directories))


def _within_store(uri: str, blob_base: str) -> str | None:
    """Why `uri` is not fetched from the task's store, or None if it may be."""
    target, base = urlparse(uri), urlparse(blob_base)
    scheme, base_scheme = target.scheme or "file", base.scheme or "file"
    if scheme not in FETCHED_SCHEMES:
        return f"scheme {scheme!r} is not one the dashboard fetches"
    if (scheme, target.netloc) != (base_scheme, base.netloc):
        return f"not in the task's store ({blob_base})"
    if scheme in ("file", "s3"):
        path, folder = PurePosixPath(unquote(target.path)), PurePosixPath(unquote(base.path))
        if ".." in path.parts or folder not in path.parents:
            return f"not in the task's store directory ({blob_base})"
    return None


def verify_round(client: ChainClient, task: int, round_number: int, policy: ReadPolicy) -> dict[str, Any]:
    """Fetch the round's blob from the task's store under `policy` (see `dashboard_policy`), hash it and
    compare with the on-chain model hash: status "match", "mismatch" or "unavailable" (with the reason;
    `refused` set when the dashboard would not fetch the URI at all)."""
    try:
        record = ledger.get_round(client, task, round_number)
        expected, uri = record.model_hash, record.uri
        blob_base = ledger.task_record(client, task).blob_base
    except FlchainError as exc:
        return {"task": task, "round": round_number, "status": "unavailable", "detail": str(exc)}
    result: dict[str, Any] = {
        "task": task,
        "round": round_number,
        "uri": uri,
        "expected": "0x" + expected.hex(),
    }
    refused = _within_store(uri, blob_base)
    if refused is not None:
        return {**result, "status": "unavailable", "refused": True, "detail": f"not fetched: {refused}"}
    try:
        blob = fetch(uri, model_cap(ledger.model_size_key(client, task), policy), policy=policy)
    except ReadRefused as exc:
        return {**result, "status": "unavailable", "refused": True, "detail": str(exc)}
    except FlchainError as exc:
        return {**result, "status": "unavailable", "detail": str(exc)}
    actual = model_hash(blob)
    status = "match" if actual == expected else "mismatch"
    if status == "match":  # the task's model size, for the next verification's cap
        remember_model_size(ledger.model_size_key(client, task), len(blob))
    return {**result, "status": status, "actual": "0x" + actual.hex(), "bytes": len(blob)}
