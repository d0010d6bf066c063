"""`flchain status`, `audit`, `watch`, `pull`, `validator`, `settle`: commands that read the ledger (and,
for the validator, attest to it; `settle` applies charges whose round is final). Any participant with the
deployment file can run them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlparse

import typer
from rich.text import Text

from fl_chain.chain import ledger, quorum, registry, reputation, settlement
from fl_chain.cli_common import (
    DeploymentOpt,
    HomeOpt,
    KeyOpt,
    RpcOpt,
    acting_account,
    chain_from_options,
    console,
    err_console,
    read_password,
)
from fl_chain.errors import FlchainError
from fl_chain.paths import state_home
from fl_chain.store_read import allow_local_store
from fl_chain.views import columns_table, describe_event, fixed
from fl_chain.wire.report import short


def _local_stores(home: Path | None, *more: str | None) -> None:
    """The file:// places this command may read (store_read): this machine's HOME/store, and any file://
    place its operator named (--updates); every other file:// URI a round names is refused."""
    allow_local_store(state_home(home) / "store")
    for uri in more:
        if uri is not None and uri.startswith("file://"):
            allow_local_store(Path(unquote(urlparse(uri).path)))


def status(
    task: Annotated[int | None, typer.Option(help="Task id (default: the newest)")] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Rounds (hash, URI, participants, scores) and reputations, read from the chain."""
    chain = chain_from_options(home, deployment, rpc)
    if task is None and ledger.task_count(chain) == 0:
        console.print("no task has been created on this deployment yet")
        return
    task_id = ledger.newest_task(chain, task)
    rounds = []
    for rnd in range(ledger.round_count(chain, task_id)):
        record = ledger.get_round(chain, task_id, rnd)
        scores = ledger.contributions(chain, task_id, rnd)
        shown = ", ".join(f"{short(a, 6)} ({fixed(s, 2)})" for a, s in sorted(scores.items())) or "-"
        rounds.append((str(rnd), short("0x" + record.model_hash.hex()), record.uri, shown))
    console.print(
        columns_table(
            f"task {task_id}: committed rounds",
            ("round", "model hash", "URI", "participants (score)"),
            rounds,
        )
    )
    nodes = [
        (
            address,
            node_status,
            fixed(reputation.reputation_of(chain, address)),
            str(reputation.updates_of(chain, address)),
        )
        for address, node_status in registry.iter_nodes(chain)
    ]
    console.print(
        columns_table(
            "reputation (1.0 = 1,000,000 on-chain)", ("node", "status", "reputation", "rounds scored"), nodes
        )
    )


def audit(
    task: Annotated[int | None, typer.Option(help="Task id (default: every task)")] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Replay the ledger: blobs reachable and hashing correctly, parent chain unbroken, participants
    active, reputation recomputed from events equal to the chain. Exits 1 on any discrepancy."""
    from fl_chain.verify.audit import audit_all

    chain = chain_from_options(home, deployment, rpc)
    _local_stores(home)
    started = time.monotonic()
    findings = audit_all(chain, task)
    rows = [
        (f.where, f.check, Text("ok", style="green") if f.ok else Text("FAIL", style="red"), f.detail)
        for f in findings
    ]
    console.print(columns_table("audit", ("where", "check", "result", "detail"), rows))
    bad = [f for f in findings if not f.ok]
    console.print(f"{len(findings)} checks, {len(bad)} discrepancies, {time.monotonic() - started:.1f} s")
    if bad:
        raise FlchainError(
            f"audit found {len(bad)} discrepancies: " + "; ".join(f"{f.where} {f.check}" for f in bad)
        )


def watch(
    confirmations: Annotated[
        int, typer.Option(help="Deliver events with this many confirmations", min=0)
    ] = 0,
    from_block: Annotated[int | None, typer.Option(help="Start here (default: the deployment block)")] = None,
    cursor: Annotated[Path | None, typer.Option(help="Cursor file (default: HOME/watch-cursor.json)")] = None,
    once: Annotated[bool, typer.Option(help="Print what is new and exit")] = False,
    ws: Annotated[
        str | None, typer.Option(help="ws(s):// URL of the node: subscribe to new blocks instead of polling")
    ] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Print flchain events live, resuming from the cursor; reorganised events are retracted."""
    from fl_chain.chain.watcher import ChainWatcher

    if ws is not None and not ws.startswith(("ws://", "wss://")):
        raise FlchainError(f"--ws {ws!r}: expected a ws:// or wss:// URL")
    chain = chain_from_options(home, deployment, rpc)
    watcher = ChainWatcher(chain, cursor or state_home(home) / "watch-cursor.json", confirmations, from_block)

    def show(event) -> None:
        console.print(describe_event(event), highlight=False)

    if once:
        for event in watcher.poll():
            show(event)
        return
    how = f"new blocks from {ws}" if ws else "polling"
    console.print(
        f"watching {chain.deployment.rpc_url} ({how}) from block {watcher.cursor.block + 1}; Ctrl-C to stop"
    )
    try:
        watcher.run(show, on_retry=_retry_notice, ws_url=ws)
    except KeyboardInterrupt:
        console.print("stopped")


def _retry_notice(message: str, wait: float) -> None:
    err_console.print(f"RPC unavailable ({message}); retrying in {wait:.1f} s")


def pull(
    task: Annotated[int | None, typer.Option(help="Task id (default: the newest)")] = None,
    finalized: Annotated[bool, typer.Option(help="Only a model finalized by the validator quorum")] = False,
    out: Annotated[Path | None, typer.Option(help="Where to write the model (.safetensors)")] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Download the newest committed model by its on-chain URI, verify its hash and write it."""
    chain = chain_from_options(home, deployment, rpc)
    _local_stores(home)
    task_id = ledger.newest_task(chain, task)
    rounds = ledger.round_count(chain, task_id)
    if rounds == 0:
        raise FlchainError(f"task {task_id} has no committed round yet")
    newest = quorum.latest_finalized(chain, task_id) if finalized else rounds - 1
    record, blob = ledger.fetch_model_blob(chain, task_id, newest)
    target = out or Path(f"model-task{task_id}-round{record.round}.safetensors")
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(target)
    console.print(
        f"task {task_id} round {record.round}: hash 0x{record.model_hash.hex()} verified, "
        f"{len(blob):,} bytes -> {target}"
    )


def validator(
    key: Annotated[Path, typer.Option(help="Keystore of an account holding VALIDATOR_ROLE")],
    model_task: Annotated[
        str,
        typer.Option("--task-spec", help="ML task of the rounds: digits, or module:attr naming a TaskSpec"),
    ] = "digits",
    data: Annotated[
        Path | None, typer.Option(help="Own held-out data (.npz with x, y); default: the task's test split")
    ] = None,
    task: Annotated[int | None, typer.Option(help="Only this task (default: every task)")] = None,
    evaluate: Annotated[
        str | None,
        typer.Option(help="A Flower App's evaluate_fn(round, ArrayRecord) -> MetricRecord, as module:attr"),
    ] = None,
    confirmations: Annotated[
        int, typer.Option(help="Attest commits with this many confirmations", min=0)
    ] = 0,
    once: Annotated[bool, typer.Option(help="Attest what is new and exit")] = False,
    updates: Annotated[
        str | None,
        typer.Option(
            help="Where verified rounds' update blobs are readable (default: the task's store + updates/)"
        ),
    ] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Run a validator: on every round commit seen by the watcher, fetch and verify the model, evaluate
    it on this validator's own data and attest (hash, accuracy) on-chain. A verified round is re-derived
    from its node-signed updates first, and disputed on-chain if it does not re-derive."""
    from fl_chain.runners.validator import ValidatorRun

    _local_stores(home, updates)
    run = ValidatorRun.open(
        chain_from_options(home, deployment, rpc),
        key,
        read_password(key),
        model_task,
        data,
        task,
        confirmations,
        state_home(home),
        evaluate,
        updates,
    )
    if once:
        run.once(console.print, err_console.print)
        return
    console.print(
        f"validator {run.worker.account.address} watching {run.worker.client.deployment.rpc_url}; "
        "Ctrl-C to stop"
    )
    try:
        run.forever(console.print, err_console.print)
    except KeyboardInterrupt:
        console.print("stopped")


def settle(
    task: Annotated[int | None, typer.Option(help="Task id (default: every task)")] = None,
    key: KeyOpt = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Apply the missed and penalized charges of verified rounds whose finality stands (finalized, past
    their complaint deadline). Anyone may: the coordinator and validators do it as they go; a disputed
    round's charges are never applied."""
    chain = chain_from_options(home, deployment, rpc)
    account = acting_account(chain, key, "coordinator")
    done, suspended = settlement.settle_due(chain, account, task)
    for task_id, rnd in done:
        console.print(f"task {task_id} round {rnd}: charges settled")
    if suspended:
        console.print(f"suspended by these charges: {', '.join(suspended)}")
    if not done:
        console.print("no round's charges are due (none held, or finality does not stand yet)")
