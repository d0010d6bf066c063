"""How flchain shows things in a terminal: run progress lines, round and ledger tables, chain events.
Pure rendering (rich); the commands decide what to show."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fl_chain.chain.client import NODE_STATUS
from fl_chain.protocol.fixedpoint import from_fixed
from fl_chain.wire.report import NodeNotice, RoundReport, RunEntry, RunNotice, short

# Markup off: what is printed comes from the chain, files and other parties (a dispute reason, an endpoint,
# a path) and must show literally; a "[/]" in it would otherwise raise or restyle. Styles go in as Text.
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)


def print_round(report: RoundReport) -> None:
    """One progress line per committed round, then its dropped replies."""
    refused = f", refused {len(report.refused)}" if report.refused else ""
    dropped = f", dropped {len(report.dropped)}" if report.dropped else ""
    times = " ".join(f"{k} {v:.2f}s" for k, v in report.seconds.items())
    console.print(
        Text.assemble(
            (f"round {report.round}", "bold"),
            f": accuracy {100 * report.accuracy:.2f} %, loss {report.loss:.4f}, "
            f"{len(report.participants)} participants{refused}{dropped}, hash {short(report.model_hash)}, "
            f"gas {report.gas:,}" + (f", {times}" if times else ""),
        )
    )
    for who, reason in report.dropped.items():
        console.print(f"    dropped reply from {who}: {reason}", highlight=False)
    for who in report.suspended:
        console.print(f"    {who} suspended automatically (reputation below the threshold)", highlight=False)


def print_notice(notice: NodeNotice) -> None:
    """A node's verdict at the join gate (each verdict is emitted once per node and reason)."""
    who = f"node {notice.node_id}" + (f" ({notice.address})" if notice.address else "")
    if notice.verdict == "verified":
        console.print(f"  {who} verified", highlight=False)
    else:
        console.print(f"  refused {who}: {notice.reason}", highlight=False)


def print_entry(entry: RunEntry) -> None:
    """Show a run event as it arrives (the run's end is shown by the command)."""
    if isinstance(entry, RoundReport):
        print_round(entry)
    elif isinstance(entry, NodeNotice):
        print_notice(entry)
    elif isinstance(entry, RunNotice):
        console.print(f"  {entry.message}", highlight=False, style="yellow")


def summary_table(reports: list[RoundReport], title: str) -> Table:
    """Round, participants, accuracy, hash, gas, tx."""
    table = Table(title=title)
    for col in ("round", "participants", "accuracy", "loss", "model hash", "gas", "tx"):
        table.add_column(col, justify="right" if col in ("round", "participants", "gas") else "left")
    for r in reports:
        table.add_row(
            str(r.round),
            str(len(r.participants)),
            f"{100 * r.accuracy:.2f} %",
            f"{r.loss:.4f}",
            short(r.model_hash),
            f"{r.gas:,}",
            short(r.tx),
        )
    return table


def key_value_table(title: str, rows: dict[str, str]) -> Table:
    """A two-column table without header."""
    table = Table(title=title, show_header=False)
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def columns_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    """A table with these columns and rows."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def fixed(value: int, digits: int = 4) -> str:
    """A fixed-point on-chain value as a decimal."""
    return f"{from_fixed(value):.{digits}f}"


def _round(a: Mapping[str, Any]) -> str:
    return f"task {a['task']} round {a['round']}"


def _listed(nodes: Iterable[str]) -> str:
    return ", ".join(nodes) or "nobody"


# One line per event kind (args -> text); anything else is printed with its raw arguments.
_EVENT_TEXT: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "RoundCommitted": lambda a: (
        f"round {a['round']} of task {a['task']} committed: hash {short(a['modelHash'])}, "
        f"{a['participantCount']} participants"
    ),
    "NodeStatusChanged": lambda a: f"node {a['node']}: {NODE_STATUS[a['from']]} -> {NODE_STATUS[a['to']]}",
    "ReputationUpdated": lambda a: f"reputation of {a['node']}: {fixed(a['value'])}",
    "RoundFinalized": lambda a: (
        f"round {a['round']} of task {a['task']} finalized by {a['attestations']} validators"
    ),
    "Attested": lambda a: f"{_round(a)}: {a['validator']} attested, metric {fixed(a['metric'])}",
    "DerivationAttested": lambda a: f"{_round(a)}: {a['validator']} re-derived the round from its updates",
    "Disputed": lambda a: f"{_round(a)}: {a['validator']} disputes it: {a['reason']}",
    "RoundDisputed": lambda a: (
        f"round {a['round']} of task {a['task']} disputed by {a['disputes']} validators: it is not final"
    ),
    "ContributionRecorded": lambda a: f"{_round(a)}: {a['node']} scored {fixed(a['score'])}",
    "UpdatesCommitted": lambda a: f"{_round(a)}: updates root {short(a['updatesRoot'])}",
    "OutcomesCommitted": lambda a: (
        f"{_round(a)}: outcomes root {short(a['outcomesRoot'])} ({a['leafCount']} leaves)"
    ),
    "CheckpointProposed": lambda a: (
        f"reputation checkpoint {a['id']} of task {a['task']} through round "
        f"{a['throughRound']} proposed: root {short(a['root'])}, {a['leafCount']} nodes"
    ),
    "CheckpointFinalized": lambda a: (
        f"reputation checkpoint {a['id']} of task {a['task']} finalized: in effect"
    ),
    "CheckpointDisputed": lambda a: (
        f"reputation checkpoint {a['id']}: {a['validator']} disputes it: {a['reason']}"
    ),
    "CheckpointRejectedByQuorum": lambda a: (
        f"reputation checkpoint {a['id']} of task {a['task']} rejected by the validators"
    ),
    "SuspensionApplied": lambda a: (
        f"{a['node']} suspended by reputation checkpoint {a['id']} ({fixed(a['reputation'])})"
    ),
    "UpdateOmitted": lambda a: (
        f"{_round(a)}: {a['node']} says its signed update {short(a['updateHash'])} "
        f"(weight {a['weight']}) was left out"
    ),
    "ClaimPosted": lambda a: (
        f"{_round(a)}: {a['node']} posted its claim {short(a['updateHash'])} "
        f"(weight {a['weight']}) before the commit"
    ),
    "ChargesRecorded": lambda a: (
        f"{_round(a)}: charges recorded: missed {_listed(a['missed'])}; penalized {_listed(a['penalized'])}"
    ),
    "ChargesSettled": lambda a: f"{_round(a)}: charges settled (finality stands)",
}


def describe_event(event) -> str:
    """One line for a chain event."""
    prefix = "RETRACTED " if event.removed else ""
    describe = _EVENT_TEXT.get(event.name)
    if describe is not None:
        text = describe(event.args)
    else:
        text = f"{event.name} " + ", ".join(f"{k}={v}" for k, v in event.args.items())
    return f"{prefix}block {event.block_number}: {text}"
