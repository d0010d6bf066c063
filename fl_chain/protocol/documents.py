"""What every document published beside a round's model shares (a verified round's manifest, a
commitment round's outcome leaves, a reputation checkpoint's leaves): its name in the store's `rounds/`,
derived from the Merkle root the chain holds, and its JSON envelope."""

from __future__ import annotations

import json

from fl_chain.errors import FlchainError


def document_name(task: int, round_number: int, root: bytes) -> str:
    """`t<task>-r<round>-<root hex>.json`: anyone can fetch a round's document by what the chain holds."""
    return f"t{task}-r{round_number}-{root.hex()}.json"


def load_document(blob: bytes, where: str, what: str, version: int, kind: str | None = None) -> dict:
    """The JSON object of a `what` document (of `kind`, if given) at `version`; a one-line error naming
    `where` otherwise."""
    try:
        data = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlchainError(f"{where}: not a JSON {what} ({exc})") from None
    if kind is not None and (not isinstance(data, dict) or data.get("kind") != kind):
        raise FlchainError(f"{where}: expected a JSON object with kind {kind!r}")
    if not isinstance(data, dict):
        raise FlchainError(f"{where}: expected a JSON object")
    if data.get("version") != version or isinstance(data.get("version"), bool):
        raise FlchainError(f"{where}: {kind or what} version {data.get('version')!r} (expected {version})")
    return data


def canonical_json(data: dict) -> bytes:
    """The canonical bytes a document is published as (sorted keys, no spaces)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
