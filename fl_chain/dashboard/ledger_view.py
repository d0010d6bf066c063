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

from fl_chain.chain.fixedpoint import from_fixed
from fl_chain.chain.node_reads import NODE_STATUS
from fl_chain.chain.watcher import ChainEvent

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
        self.events: list[ChainEvent] = []

    def apply(self, events: Iterable[ChainEvent]) -> bool:
        """Take the watcher's next events (a retraction removes the event it names); True if any."""
        changed = False
        for event in events:
            changed = True
            if event.removed:
                self.events = [e for e in self.events if e.key != event.key]
            else:
                self.events.append(event)
        return changed

    def snapshot(self, facts: ChainFacts, accuracy_by_hash: dict[str, float] | None = None) -> dict[str, Any]:
        """The whole picture as JSON-ready data (see the module docstring for where each part comes from)."""
        accuracy_by_hash = accuracy_by_hash or {}
        tasks: dict[int, dict[str, Any]] = {}
        rounds: dict[tuple[int, int], dict[str, Any]] = {}
        nodes: dict[str, dict[str, Any]] = {}
        auto_suspended: dict[tuple[str, str], str] = {}

        def node(address: str) -> dict[str, Any]:
            return nodes.setdefault(
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

        for event in self.events:
            a = event.args
            if event.name == "TaskCreated":
                tasks[a["task"]] = {
                    "task": a["task"],
                    "owner": a["owner"],
                    "blob_base": a["blobBase"],
                    "config_hash": _hex(a["configHash"]),
                    "created": _stamp(event, facts),
                    "rounds": 0,
                }
            elif event.name == "RoundCommitted":
                task = tasks.get(a["task"])
                model_hash = _hex(a["modelHash"])
                uri = a["uri"] or ((task or {}).get("blob_base", "") + model_hash.removeprefix("0x"))
                rounds[(a["task"], a["round"])] = {
                    "task": a["task"],
                    "round": a["round"],
                    "model_hash": model_hash,
                    "parent_hash": _hex(a["parentHash"]),
                    "uri": uri,
                    "participants": a["participantCount"],
                    "gas": facts.tx_gas.get(event.tx_hash),
                    **_stamp(event, facts),
                    "contributions": {},
                    "attestations": 0,
                    "metrics": [],
                    "finalized": False,
                    "accuracy": None,
                    "accuracy_source": None,
                }
                if task is not None:
                    task["rounds"] += 1
            elif event.name == "ContributionRecorded":
                record = rounds.get((a["task"], a["round"]))
                if record is not None:
                    record["contributions"][a["node"]] = from_fixed(a["score"])
                node(a["node"])["scored"] += 1
            elif event.name == "Attested":
                record = rounds.get((a["task"], a["round"]))
                if record is not None:
                    record["attestations"] += 1
                    record["metrics"].append(from_fixed(a["metric"]))
            elif event.name == "RoundFinalized":
                record = rounds.get((a["task"], a["round"]))
                if record is not None:
                    record["finalized"] = True
            elif event.name == "NodeApplied":
                entry = node(a["node"])
                entry["capacity"] = {
                    "cores": a["cores"],
                    "memory_mb": a["memoryMb"],
                    "samples_per_sec": a["samplesPerSec"],
                }
                entry["endpoint"] = a["endpoint"]
                entry["applied"] = _stamp(event, facts)
            elif event.name == "NodeStatusChanged":
                entry = node(a["node"])
                entry["status"] = NODE_STATUS[a["to"]] if 0 <= a["to"] < len(NODE_STATUS) else str(a["to"])
                stamp = {**_stamp(event, facts), "by": a["by"]}
                if entry["status"] == "Active":
                    entry["approved"] = stamp
                elif entry["status"] == "Suspended":
                    reason = auto_suspended.get((event.tx_hash, a["node"]), "by the registrar")
                    entry["suspended"] = {**stamp, "reason": reason}
            elif event.name == "AutoSuspended":
                # Emitted just before the registry's status change in the same transaction: say why.
                auto_suspended[(event.tx_hash, a["node"])] = (
                    f"reputation fell to {from_fixed(a['value']):.3f}, below the threshold"
                )
            elif event.name == "ReputationUpdated":
                entry = node(a["node"])
                entry["reputation"] = from_fixed(a["value"])
                entry["history"].append({**_stamp(event, facts), "value": entry["reputation"]})
            elif event.name == "RoundMissed":
                node(a["node"])["missed"] += 1
            elif event.name == "Penalized":
                node(a["node"])["penalized"] += 1
        for record in rounds.values():
            if record["metrics"]:
                record["accuracy"] = sum(record["metrics"]) / len(record["metrics"])
                record["accuracy_source"] = "validators"
            elif record["model_hash"] in accuracy_by_hash:
                record["accuracy"] = accuracy_by_hash[record["model_hash"]]
                record["accuracy_source"] = "server report"
        recent = [
            {"kind": e.kind, "name": e.name, "args": e.args, **_stamp(e, facts)}
            for e in self.events[-RECENT_EVENTS:]
        ]
        return {
            "tasks": sorted(tasks.values(), key=lambda t: t["task"]),
            "rounds": [rounds[k] for k in sorted(rounds)],
            "nodes": sorted(nodes.values(), key=lambda n: (n["applied"] or {}).get("block", 0)),
            "events": recent[::-1],
            "event_count": len(self.events),
        }
