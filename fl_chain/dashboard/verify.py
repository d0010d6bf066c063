"""Re-hash a round's blob and compare it with the hash on-chain, for the dashboard's verify button.

The URI comes from the chain and is attacker-controlled, so it is fetched only where the task's own
store is: same scheme and host as the task's blob base and, for files, inside the blob base's
directory. Anything else is reported, never fetched.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from fl_chain.chain import ledger
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import model_hash
from fl_chain.store import read_blob

MAX_BLOB_BYTES = 2 * 1024**3  # Flower's own message limit: no honest model blob is larger
FETCHED_SCHEMES = ("file", "http", "https")


def _within_store(uri: str, blob_base: str) -> str | None:
    """Why `uri` is not fetched from the task's store, or None if it may be."""
    target, base = urlparse(uri), urlparse(blob_base)
    scheme, base_scheme = target.scheme or "file", base.scheme or "file"
    if scheme not in FETCHED_SCHEMES:
        return f"scheme {scheme!r} is not one the dashboard fetches"
    if (scheme, target.netloc) != (base_scheme, base.netloc):
        return f"not in the task's store ({blob_base})"
    if scheme == "file":
        path, folder = PurePosixPath(unquote(target.path)), PurePosixPath(unquote(base.path))
        if ".." in path.parts or folder not in path.parents:
            return f"not in the task's store directory ({blob_base})"
    return None


def verify_round(client: ChainClient, task: int, round_number: int) -> dict[str, Any]:
    """Fetch the round's blob from the task's store, hash it and compare with the on-chain model hash:
    status "match", "mismatch" or "unavailable" (with the reason)."""
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
        return {**result, "status": "unavailable", "detail": f"not fetched: {refused}"}
    try:
        blob = read_blob(uri, timeout=30.0, max_bytes=MAX_BLOB_BYTES)
    except FlchainError as exc:
        return {**result, "status": "unavailable", "detail": str(exc)}
    actual = model_hash(blob)
    status = "match" if actual == expected else "mismatch"
    return {**result, "status": status, "actual": "0x" + actual.hex(), "bytes": len(blob)}
