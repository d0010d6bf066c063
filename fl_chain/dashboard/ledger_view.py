"""The ledger as the dashboard shows it: every flchain event folded into tasks, rounds and nodes.

The fold is pure: it reads nothing from the chain itself. What an event does not carry (the time of
its block, the gas its transaction used) comes from a `ChainFacts` the caller fills in, and the
server's own reports (accuracy beside the chain) are matched to rounds by model hash, so they cannot
attach a number to a round the chain does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fl_chain.chain.node_reads import NODE_STATUS
from fl_chain.chain.watcher import ChainEvent
from fl_chain.protocol.fixedpoint import from_fixed

RECENT_EVENTS = 200  # the newest events the page lists; the charts and tables hold everything


@dataclass
class ChainFacts:
    """What the fold needs beyond the events: block times and the gas each transaction used."""

    block_time: dict[int, int] = field(default_factory=dict)  # block number -> unix seconds
    tx_gas: dict[str, int] = field(default_factory=dict)  # tx hash -> gasUsed


def _hex(value: Any) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def _stamp(event: ChainEvent, facts: ChainFacts) -> dict[str, Any]:
    return {
        "block": event.block_number,
        "time": facts.block_time.get(event.block_number),
        "tx": event.tx_hash,
    }


class LedgerView:
    """Tasks, rounds, nodes and a recent-event feed, rebuilt from the delivered events."""

    def __init__(self) -> None:
        self.delivered: list[ChainEvent] = []

    def apply(self, events: Iterable[ChainEvent]) -> bool:
        """Take the watcher's next events (a retraction removes the event it names); True if any."""
        changed = False
        for event in events:
            changed = True
            if event.removed:
                self.delivered = [e for e in self.delivered if e.key != event.key]
            else:
                self.delivered.append(event)
        return changed

    def snapshot(self, facts: ChainFacts, accuracy_by_hash: dict[str, float] | None = None) -> dict[str, Any]:
        """The whole picture as JSON-ready data (see the module docstring for where each part comes from)."""
        fold = _Fold(facts)
        for event in self.delivered:
            handler = _HANDLERS.get(event.name)
            if handler is not None:
                handler(fold, event, event.args)
        fold.attach_accuracy(accuracy_by_hash or {})
        recent = [
            {"kind": e.kind, "name": e.name, "args": e.args, **_stamp(e, facts)}
            for e in self.delivered[-RECENT_EVENTS:]
        ]
        return {
            "tasks": sorted(fold.tasks.values(), key=lambda t: t["task"]),
            "rounds": [fold.rounds[k] for k in sorted(fold.rounds)],
            "nodes": sorted(fold.nodes.values(), key=lambda n: (n["applied"] or {}).get("block", 0)),
            "events": recent[::-1],
            "event_count": len(self.delivered),
        }


class _Fold:
    """The picture being built from one pass over the events; one method per event kind."""

    def __init__(self, facts: ChainFacts) -> None:
        self.facts = facts
        self.tasks: dict[int, dict[str, Any]] = {}
        self.rounds: dict[tuple[int, int], dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.auto_suspended: dict[tuple[str, str], str] = {}  # (tx, node) -> why

    def node(self, address: str) -> dict[str, Any]:
        """A node's entry, created empty on first sight."""
        return self.nodes.setdefault(
            address,
            {
                "address": address,
                "status": "None",
                "reputation": None,
                "scored": 0,
                "missed": 0,
                "penalized": 0,
                "capacity": None,
                "endpoint": "",
                "applied": None,
                "approved": None,
                "suspended": None,
                "history": [],
            },
        )

    def task_created(self, event: ChainEvent, a: dict[str, Any]) -> None:
        self.tasks[a["task"]] = {
            "task": a["task"],
            "owner": a["owner"],
            "blob_base": a["blobBase"],
            "config_hash": _hex(a["configHash"]),
            "created": _stamp(event, self.facts),
            "rounds": 0,
        }

    def round_committed(self, event: ChainEvent, a: dict[str, Any]) -> None:
        task = self.tasks.get(a["task"])
        model_hash = _hex(a["modelHash"])
        uri = a["uri"] or ((task or {}).get("blob_base", "") + model_hash.removeprefix("0x"))
        self.rounds[(a["task"], a["round"])] = {
            "task": a["task"],
            "round": a["round"],
            "model_hash": model_hash,
            "parent_hash": _hex(a["parentHash"]),
            "uri": uri,
            "participants": a["participantCount"],
            "gas": self.facts.tx_gas.get(event.tx_hash),
            **_stamp(event, self.facts),
            "contributions": {},
            "attestations": 0,
            "metrics": [],
            "finalized": False,
            "updates_root": None,  # verified rounds: the root of the node-signed updates
            "disputes": [],  # validators' disputes: {"validator", "reason"}
            "disputed": False,
            "accuracy": None,
            "accuracy_source": None,
        }
        if task is not None:
            task["rounds"] += 1

    def contribution(self, event: ChainEvent, a: dict[str, Any]) -> None:
        record = self.rounds.get((a["task"], a["round"]))
        if record is not None:
            record["contributions"][a["node"]] = from_fixed(a["score"])
        self.node(a["node"])["scored"] += 1

    def attested(self, event: ChainEvent, a: dict[str, Any]) -> None:
        record = self.rounds.get((a["task"], a["round"]))
        if record is not None:
            record["attestations"] += 1
            record["metrics"].append(from_fixed(a["metric"]))

    def finalized(self, event: ChainEvent, a: dict[str, Any]) -> None:
        record = self.rounds.get((a["task"], a["round"]))
        if record is not None:
            record["finalized"] = True

    def updates_committed(self, event: ChainEvent, a: dict[str, Any]) -> None:
        record = self.rounds.get((a["task"], a["round"]))
        if record is not None:
            record["updates_root"] = _hex(a["updatesRoot"])

    def disputed(self, event: ChainEvent, a: dict[str, Any]) -> None:
        record = self.rounds.get((a["task"], a["round"]))
        if record is not None:
            record["disputes"].append({"validator": a["validator"], "reason": a["reason"]})

    def round_disputed(self, event: ChainEvent, a: dict[str, Any]) -> None:
        record = self.rounds.get((a["task"], a["round"]))
        if record is not None:
            record["disputed"], record["finalized"] = True, False

    def applied(self, event: ChainEvent, a: dict[str, Any]) -> None:
        entry = self.node(a["node"])
        entry["capacity"] = {
            "cores": a["cores"],
            "memory_mb": a["memoryMb"],
            "samples_per_sec": a["samplesPerSec"],
        }
        entry["endpoint"] = a["endpoint"]
        entry["applied"] = _stamp(event, self.facts)

    def status_changed(self, event: ChainEvent, a: dict[str, Any]) -> None:
        entry = self.node(a["node"])
        entry["status"] = NODE_STATUS[a["to"]] if 0 <= a["to"] < len(NODE_STATUS) else str(a["to"])
        stamp = {**_stamp(event, self.facts), "by": a["by"]}
        if entry["status"] == "Active":
            entry["approved"] = stamp
        elif entry["status"] == "Suspended":
            reason = self.auto_suspended.get((event.tx_hash, a["node"]), "by the registrar")
            entry["suspended"] = {**stamp, "reason": reason}

    def auto_suspend(self, event: ChainEvent, a: dict[str, Any]) -> None:
        # Emitted just before the registry's status change in the same transaction: say why.
        why = f"reputation fell to {from_fixed(a['value']):.3f}, below the threshold"
        self.auto_suspended[(event.tx_hash, a["node"])] = why

    def reputation(self, event: ChainEvent, a: dict[str, Any]) -> None:
        entry = self.node(a["node"])
        entry["reputation"] = from_fixed(a["value"])
        entry["history"].append({**_stamp(event, self.facts), "value": entry["reputation"]})

    def missed(self, event: ChainEvent, a: dict[str, Any]) -> None:
        self.node(a["node"])["missed"] += 1

    def penalized(self, event: ChainEvent, a: dict[str, Any]) -> None:
        self.node(a["node"])["penalized"] += 1

    def attach_accuracy(self, accuracy_by_hash: dict[str, float]) -> None:
        """Accuracy per round: the validators' mean metric, else the server's report for that hash."""
        for record in self.rounds.values():
            if record["metrics"]:
                record["accuracy"] = sum(record["metrics"]) / len(record["metrics"])
                record["accuracy_source"] = "validators"
            elif record["model_hash"] in accuracy_by_hash:
                record["accuracy"] = accuracy_by_hash[record["model_hash"]]
                record["accuracy_source"] = "server report"


_HANDLERS = {
    "TaskCreated": _Fold.task_created,
    "RoundCommitted": _Fold.round_committed,
    "ContributionRecorded": _Fold.contribution,
    "Attested": _Fold.attested,
    "RoundFinalized": _Fold.finalized,
    "UpdatesCommitted": _Fold.updates_committed,
    "Disputed": _Fold.disputed,
    "RoundDisputed": _Fold.round_disputed,
    "NodeApplied": _Fold.applied,
    "NodeStatusChanged": _Fold.status_changed,
    "AutoSuspended": _Fold.auto_suspend,
    "ReputationUpdated": _Fold.reputation,
    "RoundMissed": _Fold.missed,
    "Penalized": _Fold.penalized,
}
