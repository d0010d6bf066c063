"""How flchain shows things in a terminal: run progress lines, round and ledger tables, chain events.
Pure rendering (rich); the commands decide what to show."""

from __future__ import annotations

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


def describe_event(event) -> str:
    """One line for a chain event."""
    args = event.args
    prefix = "RETRACTED " if event.removed else ""
    if event.name == "RoundCommitted":
        text = (
            f"round {args['round']} of task {args['task']} committed: hash {short(args['modelHash'])}, "
            f"{args['participantCount']} participants"
        )
    elif event.name == "NodeStatusChanged":
        text = f"node {args['node']}: {NODE_STATUS[args['from']]} -> {NODE_STATUS[args['to']]}"
    elif event.name == "ReputationUpdated":
        text = f"reputation of {args['node']}: {fixed(args['value'])}"
    elif event.name == "RoundFinalized":
        text = f"round {args['round']} of task {args['task']} finalized by {args['attestations']} validators"
    elif event.name == "Attested":
        text = (
            f"task {args['task']} round {args['round']}: {args['validator']} attested, "
            f"metric {fixed(args['metric'])}"
        )
    elif event.name == "DerivationAttested":
        where = f"task {args['task']} round {args['round']}"
        text = f"{where}: {args['validator']} re-derived the round from its updates"
    elif event.name == "Disputed":
        where = f"task {args['task']} round {args['round']}"
        text = f"{where}: {args['validator']} disputes it: {args['reason']}"
    elif event.name == "RoundDisputed":
        where = f"round {args['round']} of task {args['task']}"
        text = f"{where} disputed by {args['disputes']} validators: it is not final"
    elif event.name == "ContributionRecorded":
        text = f"task {args['task']} round {args['round']}: {args['node']} scored {fixed(args['score'])}"
    elif event.name == "UpdatesCommitted":
        text = f"task {args['task']} round {args['round']}: updates root {short(args['updatesRoot'])}"
    elif event.name == "OutcomesCommitted":
        where = f"task {args['task']} round {args['round']}"
        text = f"{where}: outcomes root {short(args['outcomesRoot'])} ({args['leafCount']} leaves)"
    elif event.name == "CheckpointProposed":
        text = (
            f"reputation checkpoint {args['id']} of task {args['task']} through round "
            f"{args['throughRound']} proposed: root {short(args['root'])}, {args['leafCount']} nodes"
        )
    elif event.name == "CheckpointFinalized":
        text = f"reputation checkpoint {args['id']} of task {args['task']} finalized: in effect"
    elif event.name == "CheckpointDisputed":
        text = f"reputation checkpoint {args['id']}: {args['validator']} disputes it: {args['reason']}"
    elif event.name == "CheckpointRejectedByQuorum":
        text = f"reputation checkpoint {args['id']} of task {args['task']} rejected by the validators"
    elif event.name == "SuspensionApplied":
        text = f"{args['node']} suspended by reputation checkpoint {args['id']} ({fixed(args['reputation'])})"
    elif event.name == "UpdateOmitted":
        text = (
            f"task {args['task']} round {args['round']}: {args['node']} says its signed update "
            f"{short(args['updateHash'])} (weight {args['weight']}) was left out"
        )
    elif event.name == "ClaimPosted":
        text = (
            f"task {args['task']} round {args['round']}: {args['node']} posted its claim "
            f"{short(args['updateHash'])} (weight {args['weight']}) before the commit"
        )
    else:
        text = f"{event.name} " + ", ".join(f"{k}={v}" for k, v in args.items())
    return f"{prefix}block {event.block_number}: {text}"
