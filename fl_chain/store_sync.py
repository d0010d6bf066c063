"""`flchain store sync SRC DST`: copy a store's published history to another store (a directory or an
s3:// bucket, either way), so a federation can move or mirror it; the on-chain URIs name the old place,
and any mirror may serve a blob since the hash decides.

Every object is read through `store_read.fetch` (bounded) and checked against the hash its name carries
before it is written (by the destination's own durable put): a model or update blob must hash to its
name, a rules document to its `rules-<hash>`, a round's manifest, outcome or checkpoint leaves to the
Merkle root in `t<task>-r<round>-<root>.json`. An object that does not is refused and not copied.
Update blobs are private (validators only): copied only when asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fl_chain.errors import FlchainError
from fl_chain.protocol.manifest import MAX_MANIFEST_BYTES, parse_manifest
from fl_chain.protocol.model_bytes import model_hash
from fl_chain.protocol.outcomes import MAX_DOCUMENT_BYTES, parse_checkpoint, parse_outcomes
from fl_chain.protocol.task_rules import MAX_RULES_BYTES, parse_rules
from fl_chain.store import ROUNDS_DIR, UPDATES_DIR, BlobStore, is_s3, open_model_store
from fl_chain.store_read import allow_local_store, fetch, s3_filesystem, use_s3_endpoint

_BLOB = re.compile(r"^[0-9a-f]{64}$")
_UPDATE = re.compile(rf"^{UPDATES_DIR}/([0-9a-f]{{64}})$")
_RULES = re.compile(rf"^{ROUNDS_DIR}/rules-([0-9a-f]{{64}})\.json$")
_ROUND_DOC = re.compile(rf"^{ROUNDS_DIR}/t[0-9]+-r[0-9]+-([0-9a-f]{{64}})\.json$")


@dataclass
class SyncResult:
    """What a sync did: objects copied (verified) by kind, objects refused with the reason, others
    left alone (not a store object, or an update blob without `updates`)."""

    copied: dict[str, int] = field(default_factory=lambda: {"model": 0, "document": 0, "update": 0})
    refused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def sync_stores(src: str, dst: str, updates: bool = False, endpoint_url: str | None = None) -> SyncResult:
    """Copy every verified object of the store at `src` to the store at `dst` (see the module
    docstring); `endpoint_url` for an S3-compatible service that is not AWS (both sides)."""
    if endpoint_url:
        use_s3_endpoint(endpoint_url)
    source = _base(src)
    if not is_s3(source):
        allow_local_store(Path(src))  # the operator named it: file:// reads inside it are allowed
    target = open_model_store(dst, endpoint_url=endpoint_url)
    result = SyncResult()
    for name in _names(source, endpoint_url):
        if _UPDATE.match(name) and not updates:
            result.skipped.append(name)
            continue
        try:
            kind = _copy(source + name, name, target)
        except FlchainError as exc:
            result.refused.append(f"{name}: {exc}")
            continue
        if kind is None:
            result.skipped.append(name)
        else:
            result.copied[kind] += 1
    return result


def _base(location: str) -> str:
    """A store location as a URI base ending in "/" (a directory becomes file://)."""
    if is_s3(location):
        return location if location.endswith("/") else location + "/"
    directory = Path(location).expanduser().resolve()
    if not directory.is_dir():
        raise FlchainError(f"store {location}: not a directory")
    return directory.as_uri() + "/"


def _names(base: str, endpoint_url: str | None) -> list[str]:
    """Every object below `base`, as names relative to it (sorted)."""
    if is_s3(base):
        root = base.removeprefix("s3://").rstrip("/")
        try:
            found = s3_filesystem(endpoint_url).find(root)
        except Exception as exc:
            raise FlchainError(f"cannot list store {base}: {type(exc).__name__}: {exc}") from None
        return sorted(path[len(root) + 1 :] for path in found)
    directory = Path(base.removeprefix("file://"))
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def _copy(uri: str, name: str, target: BlobStore) -> str | None:
    """Read, verify and write one object; its kind, or None if it is not a store object."""
    if _BLOB.match(name) or _UPDATE.match(name):
        blob = fetch(uri, what="blob")
        digest = model_hash(blob).hex()
        if digest != name.rsplit("/", 1)[-1]:
            raise FlchainError(f"hashes to {digest}, not to its name")
        if name.startswith(UPDATES_DIR + "/"):
            target.put_update(blob)
            return "update"
        target.put(blob)
        return "model"
    if rules := _RULES.match(name):
        blob = fetch(uri, MAX_RULES_BYTES, "rules document")
        if parse_rules(blob, uri).rules_hash().hex() != rules.group(1):
            raise FlchainError("its rules hash is not the one in its name")
    elif doc := _ROUND_DOC.match(name):
        blob = fetch(uri, max(MAX_MANIFEST_BYTES, MAX_DOCUMENT_BYTES), "document")
        if _document_root(blob, uri) != doc.group(1):
            raise FlchainError("its leaves do not give the root in its name")
    else:
        return None
    target.put_document(name.removeprefix(ROUNDS_DIR + "/"), blob)
    return "document"


def _document_root(blob: bytes, where: str) -> str:
    """The Merkle root of a round document of any kind (manifest, outcomes, checkpoint), in hex."""
    errors = []
    for parse in (parse_manifest, parse_outcomes, parse_checkpoint):
        try:
            return parse(blob, where).root().hex()
        except FlchainError as exc:
            errors.append(str(exc))
    raise FlchainError(f"not a manifest, outcome or checkpoint document ({errors[0]})")
