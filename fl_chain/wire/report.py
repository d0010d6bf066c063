"""What a federated run tells the world: round reports, node verdicts (verified / refused) and the run's
end. The ServerApp emits them to a `RunEvents` sink: a JSON-lines file (the only channel between the
ServerApp process and `flchain server`) and/or a callback (the demo and notebooks, in process)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from logging import INFO, WARNING
from pathlib import Path

from flwr.supercore import log

from fl_chain.errors import FlchainError


@dataclass
class RoundReport:
    """What happened in one round."""

    round: int
    participants: list[str] = field(default_factory=list)
    scores: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    accuracy: float = 0.0
    loss: float = 0.0
    model_hash: str = ""
    uri: str = ""
    tx: str = ""
    gas: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)
    penalized: list[str] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)
    reputations: dict[str, int] = field(default_factory=dict)
    raw_scores: dict[str, float] = field(default_factory=dict)
    clipped: dict[str, float] = field(default_factory=dict)  # who -> factor its update was scaled by
    signed: list[str] = field(default_factory=list)  # participants whose update carried a valid signature
    metrics: dict[str, float] = field(default_factory=dict)  # the app's own evaluation, if it has one
    step_scaled: float = 1.0  # factor the aggregate's step was shortened by (defence/influence.py)
    updates_root: str = ""  # verified rounds: the Merkle root of the disclosed, node-signed updates
    published_bytes: int = 0  # verified rounds: update blobs + manifest stored beside the model
    outcomes_root: str = ""  # commitment mode: the Merkle root of the round's outcome leaves
    checkpoint: int = 0  # commitment mode: the reputation checkpoint proposed after the round (0: none)


@dataclass
class NodeNotice:
    """A node's verdict at the join gate: "verified" or "refused" (with the reason)."""

    node_id: int
    verdict: str
    address: str = ""
    reason: str = ""


@dataclass
class RunNotice:
    """Something the operator should see while the run goes on (e.g. the chain node is away)."""

    message: str


@dataclass
class RunEnd:
    """The run finished (ok) or failed (with the error)."""

    ok: bool
    error: str = ""


RunEntry = RoundReport | NodeNotice | RunNotice | RunEnd
_TYPES: dict[str, type] = {"round": RoundReport, "node": NodeNotice, "notice": RunNotice, "end": RunEnd}
_NAMES = {cls: name for name, cls in _TYPES.items()}


def encode_entry(entry: RunEntry) -> str:
    """One JSON line for an entry."""
    return json.dumps({"type": _NAMES[type(entry)], **asdict(entry)})


def decode_entry(line: str) -> RunEntry | None:
    """The entry of a JSON line (None for blank lines or unknown types, so newer writers stay readable)."""
    if not line.strip():
        return None
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    cls = _TYPES.get(data.pop("type", "round"))
    if cls is None:
        return None
    values = {}
    for f in fields(cls):
        if f.name in data:
            kind = _JSON_KINDS[str(f.type).split("[")[0]]
            value = data[f.name]
            if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kind):
                raise ValueError(f"field {f.name!r} is not {f.type!s}")
            values[f.name] = value
    return cls(**values)


# The JSON value kinds each annotated field type accepts (entries are read back by `flchain server`).
_JSON_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


class RunEvents:
    """Where a run's entries go: appended to a JSON-lines file and/or handed to a callback, and logged."""

    def __init__(self, path: Path | None = None, callback: Callable[[RunEntry], None] | None = None) -> None:
        self.path = path
        self.callback = callback
        self.rounds: list[RoundReport] = []

    def notice(self, message: str) -> None:
        """Emit a RunNotice (a callback for `ChainClient.on_outage`)."""
        self.emit(RunNotice(message))

    def emit(self, entry: RunEntry) -> None:
        """Record one entry."""
        if isinstance(entry, RoundReport):
            self.rounds.append(entry)
            log(
                INFO, "flchain: round %s committed, hash %s, gas %s", entry.round, entry.model_hash, entry.gas
            )
        elif isinstance(entry, NodeNotice):
            level = INFO if entry.verdict == "verified" else WARNING
            log(level, "flchain: node %s %s %s %s", entry.node_id, entry.verdict, entry.address, entry.reason)
        elif isinstance(entry, RunNotice):
            log(WARNING, "flchain: %s", entry.message)
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(encode_entry(entry) + "\n")
        if self.callback is not None:
            self.callback(entry)


class RunEventsReader:
    """Reads a run's JSON-lines file incrementally (only complete lines), as the ServerApp writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    @property
    def offset(self) -> int:
        """Bytes of the file read so far (complete lines only)."""
        return self._offset

    def new_entries(self) -> list[RunEntry]:
        """Entries written since the last call."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        entries = []
        for line in complete.split(b"\n"):
            try:
                entry = decode_entry(line.decode())
            except (ValueError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError included
                raise FlchainError(f"{self.path}: a line is not a run entry ({str(exc)[:100]})") from None
            if entry is not None:
                entries.append(entry)
        return entries


def read_reports(path: Path) -> list[RoundReport]:
    """Every round report of a run file."""
    return [e for e in RunEventsReader(path).new_entries() if isinstance(e, RoundReport)]


def metric_fields(metrics: Mapping[str, object] | None) -> dict:
    """Report fields from a user's MetricRecord: all of it, plus its accuracy and loss if it names them."""
    if not metrics:
        return {}
    values = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    fields: dict = {"metrics": values}
    for field_name, hints in (("accuracy", ("accuracy", "acc")), ("loss", ("loss",))):
        found = next((values[k] for k in values if k.lower() in hints), None)
        if found is None:
            found = next((values[k] for k in values if hints[-1] in k.lower()), None)
        if found is not None:
            fields[field_name] = found
    return fields


def short(value: str, keep: int = 10) -> str:
    """A long hex string (a hash, a transaction) shortened to its start and end, as reports show it."""
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-6:]}"
