"""`flchain server`, `flchain client`, `flchain demo`, `flchain status`: the federated-learning commands."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fl_chain.chain.client import NODE_STATUS
from fl_chain.chain.identity import PASSWORD_ENV, load_key
from fl_chain.chain.ledger import contributions, get_round, require_task, round_count
from fl_chain.chain.localnode import BACKENDS, free_port
from fl_chain.cli_common import (
    DeploymentOpt,
    HomeOpt,
    RpcOpt,
    chain_from_options,
    console,
    deployment_path,
    err_console,
    read_password,
)
from fl_chain.config import RunConfig, load_config
from fl_chain.errors import FlchainError
from fl_chain.fl.strategy import RoundReport
from fl_chain.paths import state_home


def _short(value: str, keep: int = 10) -> str:
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-6:]}"


def print_round(report: RoundReport) -> None:
    """One progress line per committed round."""
    refused = f", refused {len(report.refused)}" if report.refused else ""
    dropped = f", dropped {len(report.dropped)}" if report.dropped else ""
    times = " ".join(f"{k} {v:.2f}s" for k, v in report.seconds.items())
    console.print(
        f"[bold]round {report.round}[/bold]: accuracy {100 * report.accuracy:.2f} %, loss {report.loss:.4f}, "
        f"{len(report.participants)} participants{refused}{dropped}, hash {_short(report.model_hash)}, "
        f"gas {report.gas:,}" + (f", {times}" if times else "")
    )
    for who, reason in report.refused.items():
        console.print(f"    refused {who}: {reason}", highlight=False)
    for who, reason in report.dropped.items():
        console.print(f"    dropped reply from {who}: {reason}", highlight=False)


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
            _short(r.model_hash),
            f"{r.gas:,}",
            _short(r.tx),
        )
    return table


def read_reports(path: Path) -> list[RoundReport]:
    """Round reports written by the ServerApp (one JSON object per line)."""
    if not path.exists():
        return []
    names = {f.name for f in fields(RoundReport)}
    reports = []
    for line in path.read_text().splitlines():
        if line.strip():
            data = json.loads(line)
            reports.append(RoundReport(**{k: v for k, v in data.items() if k in names}))
    return reports


def _config_with_overrides(config_path: Path | None, rounds: int | None) -> RunConfig:
    config = load_config(config_path)
    if rounds is not None:
        if rounds < 1:
            raise FlchainError(f"--rounds {rounds}: expected >= 1")
        config.federation.rounds = rounds
    return config


def demo(
    clients: Annotated[int, typer.Option(help="Simulated nodes", min=1, max=100)] = 10,
    rounds: Annotated[int | None, typer.Option(help="Training rounds (default: config, 5)")] = None,
    backend: Annotated[str, typer.Option(help=f"Local chain: {' | '.join(BACKENDS)}")] = "anvil",
    non_iid: Annotated[
        float | None, typer.Option("--non-iid", help="Dirichlet alpha for non-IID partitions (default: IID)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config (default: built-in defaults)")] = None,
    home: Annotated[Path, typer.Option(help="Where the demo writes its files")] = Path(".flchain/demo"),
    verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's own logs")] = False,
    validators: Annotated[
        int, typer.Option(help="Validators that attest every round; clients train only from finalized models")
    ] = 0,
) -> None:
    """Everything on one machine: local chain, contracts, node keys, Simulation Engine, summary, plot."""
    import logging

    from fl_chain.demo import run_demo

    if backend not in BACKENDS:
        raise FlchainError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    run_config = _config_with_overrides(config, rounds)
    if non_iid is not None:
        if non_iid <= 0:
            raise FlchainError(f"--non-iid {non_iid}: the Dirichlet alpha must be > 0")
        run_config.task.partitioning, run_config.task.alpha = "dirichlet", non_iid
    if not verbose:
        # Refusals and dropped replies are printed per round below; Flower's own notices (such as
        # run_simulation's deprecation) and Ray's are hidden unless asked for.
        logging.getLogger("flwr").setLevel(logging.ERROR)
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
    console.print(
        f"flchain demo: {clients} simulated nodes, {run_config.federation.rounds} rounds, "
        f"{run_config.federation.strategy}, {backend} chain, "
        + (
            f"Dirichlet(alpha={run_config.task.alpha}) partitions"
            if run_config.task.partitioning == "dirichlet"
            else "IID"
        )
    )
    started = time.monotonic()
    result = run_demo(
        run_config, clients, home.resolve(), backend, on_round=print_round, validators=validators
    )
    if validators:
        attested = result.extra["attestations"]
        console.print(f"{validators} validators attested {len(attested)} times; quorum {validators}")
    expected = run_config.federation.rounds + 1
    console.print(summary_table(result.reports, f"task {result.task}: rounds committed on-chain"))
    console.print(
        f"chain holds {result.chain_rounds} rounds (0-{result.chain_rounds - 1}); "
        f"final accuracy {100 * result.reports[-1].accuracy:.2f} %; plot {result.plot}; "
        f"{time.monotonic() - started:.0f} s"
    )
    if result.chain_rounds != expected or len(result.reports) != expected:
        raise FlchainError(f"the run ended early: {len(result.reports)} of {expected} rounds committed")


def server(
    config: Annotated[Path, typer.Option(help="TOML run configuration, e.g. configs/demo.toml")],
    rounds: Annotated[int | None, typer.Option(help="Override federation.rounds")] = None,
    host: Annotated[str, typer.Option(help="Interface the SuperLink listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="SuperLink port (Fleet + Control API)")] = 9100,
    certificates: Annotated[
        Path | None, typer.Option(help="Directory with ca.crt, server.pem, server.key for TLS")
    ] = None,
    insecure: Annotated[bool, typer.Option(help="Allow plain HTTP on a non-loopback interface")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue a task from its last on-chain round (e.g. after a crash)")
    ] = False,
    task: Annotated[
        int | None, typer.Option(help="Task to resume (default: this coordinator's newest)")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Start a SuperLink, submit the flchain ServerApp and stream its progress until the run ends."""
    from fl_chain.chain.client import open_chain
    from fl_chain.fl.processes import (
        check_certificates,
        is_loopback,
        prepare_app,
        start_superlink,
        submit_run,
    )
    from fl_chain.fl.server_app import coordinator_account, write_run_file
    from fl_chain.tasks import load_task

    run_config = _config_with_overrides(config, rounds)
    home_dir = state_home(home)
    if certificates is None and not insecure and not is_loopback(host):
        raise FlchainError(f"--host {host} is not loopback: pass --certificates DIR for TLS, or --insecure")
    if certificates is not None:
        check_certificates(certificates)
    # Fail fast, before starting anything: chain, coordinator key, task.
    deployment = (
        Path(run_config.chain.deployment) if run_config.chain.deployment else deployment_path(home, None)
    )
    client = open_chain(deployment, run_config.chain.rpc or None)
    run_config.chain.deployment = str(deployment.resolve())
    if run_config.chain.coordinator_key and PASSWORD_ENV not in os.environ:
        os.environ[PASSWORD_ENV] = read_password(Path(run_config.chain.coordinator_key))
    coordinator = coordinator_account(client, run_config)
    load_task(run_config.task.name)
    resume_task, already = None, 0
    if resume:
        from fl_chain.fl.server_app import newest_owned_task, resume_point

        resume_task = task if task is not None else newest_owned_task(client, coordinator.address)
        _, already, _, model_hash, _ = resume_point(client, coordinator, resume_task)  # fetch + verify now
        console.print(
            f"resuming task {resume_task} after round {already} (model 0x{model_hash.hex()[:12]}…, verified)"
        )
        if already >= run_config.federation.rounds:
            console.print(f"task {resume_task} already has {already} rounds: nothing to do")
            return
    elif task is not None:
        raise FlchainError("--task is only used with --resume")

    run_dir = home_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    report_path = run_dir / "rounds.jsonl"
    run_file = run_dir / "run.json"
    if not run_config.store.dir:
        run_config.store.dir = str(home_dir / "store")
    write_run_file(run_file, run_config, home_dir, report_path, resume_task)
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    app_dir, flwr_home = prepare_app(run_dir, f"{connect_host}:{port}", certificates)

    from fl_chain.chain.localnode import port_in_use

    if port_in_use(port, host):
        raise FlchainError(f"port {port} on {host} is already in use: choose another with --port")
    link = start_superlink(host, port, run_dir / "superlink.log", certificates)
    runner = None
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        console.print(
            f"SuperLink on {host}:{port} (pid {link.pid}); coordinator {coordinator.address}; "
            f"connect nodes with: flchain client --superlink {connect_host}:{port} --key KEY"
        )
        runner = submit_run(app_dir, flwr_home, run_file, run_dir / "serverapp.log")
        expected = run_config.federation.rounds - already + (0 if resume else 1)
        reports = _follow(runner, run_dir / "serverapp.log", report_path, expected)
    finally:
        if runner is not None:
            runner.stop()
        link.stop()
        signal.signal(signal.SIGTERM, previous)
    console.print(summary_table(reports, "rounds committed on-chain"))
    if len(reports) != expected:
        raise FlchainError(
            f"the run failed: {len(reports)} of {expected} expected rounds committed: "
            f"{_last_error(run_dir / 'serverapp.log')} (logs in {run_dir})"
        )
    console.print(f"run complete; logs and reports in {run_dir}")


_NOISE = re.compile(r"\x1b\[[0-9;]*m")


def _follow(runner, log: Path, report_path: Path, rounds: int) -> list[RoundReport]:
    """Print refused/dropped notices and one line per committed round until the run ends."""
    shown_lines, shown_rounds = 0, 0
    while True:
        finished = runner.proc.poll() is not None
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()
            for line in lines[shown_lines:]:
                clean = _NOISE.sub("", line)
                if "flchain: refused" in clean or "flchain: dropped" in clean or "flchain: node" in clean:
                    console.print("  " + clean.split("flchain: ", 1)[1], highlight=False)
            shown_lines = len(lines)
        reports = read_reports(report_path)
        for report in reports[shown_rounds:]:
            print_round(report)
        shown_rounds = len(reports)
        if finished or (shown_rounds == rounds + 1 and _run_finished(log)):
            return reports
        time.sleep(0.5)


def _run_finished(log: Path) -> bool:
    return log.exists() and "Strategy execution finished" in log.read_text(errors="replace")


def _last_error(log: Path) -> str:
    if not log.exists():
        return "no ServerApp output"
    lines = [_NOISE.sub("", ln).strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "ERROR" in ln or "error" in ln]
    return (errors or lines or ["no ServerApp output"])[-1][:300]


def client(
    key: Annotated[Path, typer.Option(help="This node's keystore")],
    superlink: Annotated[str, typer.Option(help="SuperLink address HOST:PORT")] = "127.0.0.1:9100",
    partition: Annotated[str, typer.Option(help="This node's partition of the demo data, i/n")] = "0/1",
    data: Annotated[Path | None, typer.Option(help="Own data: .npz with x (n, 64) and y (n,)")] = None,
    partitioning: Annotated[str, typer.Option(help="iid | dirichlet | shards")] = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet alpha")] = 0.5,
    root_certificates: Annotated[Path | None, typer.Option(help="CA certificate of a TLS SuperLink")] = None,
    model_source: Annotated[str, typer.Option(help="message | store (fetch the committed blob)")] = "message",
    finalized_only: Annotated[
        bool, typer.Option(help="Train only from models finalized by the validator quorum")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Local port of this SuperNode's app API")] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Start a SuperNode running this node's ClientApp; runs until Ctrl-C."""
    from fl_chain.fl.processes import Managed, start_supernode

    match = re.fullmatch(r"(\d+)/(\d+)", partition)
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise FlchainError(f"--partition {partition!r}: expected i/n with 0 <= i < n, e.g. 0/3")
    if data is not None and not data.exists():
        raise FlchainError(f"--data {data}: file does not exist")
    if model_source not in ("message", "store"):
        raise FlchainError(f"--model-source {model_source!r}: expected message or store")
    if partitioning not in ("iid", "dirichlet", "shards"):
        raise FlchainError(f"--partitioning {partitioning!r}: expected iid, dirichlet or shards")
    if not re.fullmatch(r"[^:\s]+:\d+", superlink):
        raise FlchainError(f"--superlink {superlink!r}: expected HOST:PORT")
    password = read_password(key)
    account = load_key(key, password)
    deployment_file = deployment_path(home, deployment).resolve()
    chain = chain_from_options(home, deployment, rpc)
    status = chain.node_status(account.address)
    if status != "Active":
        err_console.print(
            f"warning: {account.address} is {status} in the NodeRegistry; the server will refuse this node "
            "until a registrar approves it"
        )
    node_config: dict[str, str | int | float] = {
        "flchain-deployment": str(deployment_file),
        "flchain-key": str(key.resolve()),
        "partition-id": int(match.group(1)),
        "num-partitions": int(match.group(2)),
        "flchain-partitioning": partitioning,
        "flchain-alpha": alpha,
        "flchain-model-source": model_source,
        "flchain-finalized-only": int(finalized_only),
    }
    if rpc:
        node_config["flchain-rpc"] = rpc
    if data is not None:
        node_config["flchain-data"] = str(data.resolve())
    log = state_home(home) / "nodes" / f"{account.address}.log"

    def launch() -> Managed:
        return start_supernode(
            superlink, port or free_port(), node_config, log, root_certificates, {PASSWORD_ENV: password}
        )

    node = launch()
    console.print(f"node {account.address} ({status}) -> SuperLink {superlink} (pid {node.pid}, log {log})")
    from fl_chain.chain.watcher import ChainWatcher

    # The node learns of commits and of its own reputation from the chain, not from the server.
    watcher = ChainWatcher(chain, None, from_block=chain.w3.eth.block_number + 1)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            _report_chain_events(watcher, account.address)
            time.sleep(0.5)
            if node.proc.poll() is not None:
                # The SuperNode gives up when its SuperLink goes away (server crash or restart): keep the
                # node in the federation by starting it again, so a resumed server finds it.
                err_console.print(
                    f"SuperNode exited with code {node.proc.returncode} (SuperLink {superlink} gone?); "
                    f"restarting it in 2 s; see {log}"
                )
                node.stop()
                time.sleep(2.0)
                node = launch()
    except KeyboardInterrupt:
        console.print("stopping the node")
    finally:
        node.stop()
        signal.signal(signal.SIGTERM, previous)


def _report_chain_events(watcher, address: str) -> None:
    """Print round commits and this node's reputation and status changes as the chain has them."""
    try:
        events = watcher.poll()
    except FlchainError:
        raise
    except Exception as exc:  # the RPC is down: try again on the next tick, the cursor did not move
        err_console.print(f"chain unavailable: {type(exc).__name__}")
        return
    for event in events:
        mine = str(event.args.get("node", "")).lower() == address.lower()
        if event.name == "RoundCommitted" or (
            mine and event.name in ("ReputationUpdated", "NodeStatusChanged")
        ):
            console.print("chain: " + describe_event(event), highlight=False)


def status(
    task: Annotated[int | None, typer.Option(help="Task id (default: the newest)")] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Rounds (hash, URI, participants, scores) and reputations, read from the chain."""
    chain = chain_from_options(home, deployment, rpc)
    tasks = int(chain.ledger.functions.taskCount().call())
    if task is not None:
        require_task(chain, task)
    if tasks == 0:
        console.print("no task has been created on this deployment yet")
        return
    task_id = task if task is not None else tasks
    require_task(chain, task_id)
    table = Table(title=f"task {task_id}: committed rounds")
    for col in ("round", "model hash", "URI", "participants (score)"):
        table.add_column(col)
    for rnd in range(round_count(chain, task_id)):
        record = get_round(chain, task_id, rnd)
        scores = contributions(chain, task_id, rnd)
        shown = ", ".join(f"{_short(a, 6)} ({s / 1e6:.2f})" for a, s in sorted(scores.items())) or "-"
        table.add_row(str(rnd), _short("0x" + record.model_hash.hex()), record.uri, shown)
    console.print(table)
    reputations = Table(title="reputation (1.0 = 1,000,000 on-chain)")
    for col in ("node", "status", "reputation", "rounds scored"):
        reputations.add_column(col)
    total = int(chain.registry.functions.nodeCount().call())
    for offset in range(0, total, 200):
        addresses, statuses = chain.registry.functions.listNodes(offset, 200).call()
        for address, node_status in zip(addresses, statuses, strict=True):
            rep = chain.reputation.functions.reputationOf(address).call()
            updates = chain.reputation.functions.updatesOf(address).call()
            reputations.add_row(address, NODE_STATUS[node_status], f"{rep / 1e6:.4f}", str(updates))
    console.print(reputations)


def audit(
    task: Annotated[int | None, typer.Option(help="Task id (default: every task)")] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Replay the ledger: blobs reachable and hashing correctly, parent chain unbroken, participants
    active, reputation recomputed from events equal to the chain. Exits 1 on any discrepancy."""
    from fl_chain.chain.audit import audit_reputation, audit_task

    chain = chain_from_options(home, deployment, rpc)
    tasks = int(chain.ledger.functions.taskCount().call())
    if task is not None:
        require_task(chain, task)
    started = time.monotonic()
    findings = []
    for t in [task] if task is not None else range(1, tasks + 1):
        findings += audit_task(chain, t)
    findings += audit_reputation(chain)
    table = Table(title="audit")
    for col in ("where", "check", "result", "detail"):
        table.add_column(col)
    for f in findings:
        table.add_row(f.where, f.check, "[green]ok[/green]" if f.ok else "[red]FAIL[/red]", f.detail)
    console.print(table)
    bad = [f for f in findings if not f.ok]
    console.print(f"{len(findings)} checks, {len(bad)} discrepancies, {time.monotonic() - started:.1f} s")
    if bad:
        raise FlchainError(
            f"audit found {len(bad)} discrepancies: " + "; ".join(f"{f.where} {f.check}" for f in bad)
        )


def describe_event(event) -> str:
    """One line for a chain event."""
    args = event.args
    prefix = "RETRACTED " if event.removed else ""
    if event.name == "RoundCommitted":
        text = (
            f"round {args['round']} of task {args['task']} committed: hash {_short(args['modelHash'])}, "
            f"{args['participantCount']} participants"
        )
    elif event.name == "NodeStatusChanged":
        text = f"node {args['node']}: {NODE_STATUS[args['from']]} -> {NODE_STATUS[args['to']]}"
    elif event.name == "ReputationUpdated":
        text = f"reputation of {args['node']}: {args['value'] / 1e6:.4f}"
    elif event.name == "RoundFinalized":
        text = f"round {args['round']} of task {args['task']} finalized by {args['attestations']} validators"
    elif event.name == "Attested":
        text = (
            f"task {args['task']} round {args['round']}: {args['validator']} attested, "
            f"metric {args['metric'] / 1e6:.4f}"
        )
    elif event.name == "ContributionRecorded":
        text = f"task {args['task']} round {args['round']}: {args['node']} scored {args['score'] / 1e6:.4f}"
    else:
        text = f"{event.name} " + ", ".join(f"{k}={v}" for k, v in args.items())
    return f"{prefix}block {event.block_number}: {text}"


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

    chain = chain_from_options(home, deployment, rpc)
    cursor_path = cursor or state_home(home) / "watch-cursor.json"
    watcher = ChainWatcher(chain, cursor_path, confirmations, from_block)

    def show(event) -> None:
        console.print(describe_event(event), highlight=False)

    if once:
        for event in watcher.poll():
            show(event)
        return

    def retry(message: str, wait: float) -> None:
        err_console.print(f"RPC unavailable ({message}); retrying in {wait:.1f} s")

    console.print(
        f"watching {chain.deployment.rpc_url} from block {watcher.cursor.block + 1}; Ctrl-C to stop"
    )
    try:
        watcher.run(show, on_retry=retry)
    except KeyboardInterrupt:
        console.print("stopped")


def pull(
    task: Annotated[int | None, typer.Option(help="Task id (default: the newest)")] = None,
    finalized: Annotated[bool, typer.Option(help="Only a model finalized by the validator quorum")] = False,
    out: Annotated[Path | None, typer.Option(help="Where to write the model (.safetensors)")] = None,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Download the newest committed model by its on-chain URI, verify its hash and write it."""
    from fl_chain.store import fetch_blob

    chain = chain_from_options(home, deployment, rpc)
    tasks = int(chain.ledger.functions.taskCount().call())
    task_id = task if task is not None else tasks
    require_task(chain, task_id)
    rounds = round_count(chain, task_id)
    if rounds == 0:
        raise FlchainError(f"task {task_id} has no committed round yet")
    newest = rounds - 1
    if finalized:
        if chain.validation is None:
            raise FlchainError("--finalized: this deployment has no ValidationQuorum contract")
        newest = int(chain.call(chain.validation.functions.latestFinalized(task_id)))
    record = get_round(chain, task_id, newest)
    blob = fetch_blob(record.uri, record.model_hash)
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
    data: Annotated[
        Path | None, typer.Option(help="Own held-out data (.npz with x, y); default: digits test split")
    ] = None,
    task: Annotated[int | None, typer.Option(help="Only this task (default: every task)")] = None,
    confirmations: Annotated[
        int, typer.Option(help="Attest commits with this many confirmations", min=0)
    ] = 0,
    once: Annotated[bool, typer.Option(help="Attest what is new and exit")] = False,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Run a validator: on every round commit seen by the watcher, fetch and verify the model, evaluate
    it on this validator's own data and attest (hash, accuracy) on-chain."""
    from fl_chain.chain.client import role_id
    from fl_chain.chain.watcher import ChainWatcher
    from fl_chain.fl.validator import Validator
    from fl_chain.tasks.digits import build_model, load_npz, server_data

    account = load_key(key, read_password(key))
    chain = chain_from_options(home, deployment, rpc)
    if chain.validation is None:
        raise FlchainError("this deployment has no ValidationQuorum contract: redeploy with this version")
    if not chain.validation.functions.hasRole(role_id("VALIDATOR_ROLE"), account.address).call():
        raise FlchainError(
            f"{account.address} lacks VALIDATOR_ROLE: ask the admin (flchain node validator-role)"
        )
    held_out = load_npz(data) if data is not None else server_data(0)[1]
    worker = Validator(chain, account, held_out, build_model, task)
    watcher = ChainWatcher(
        chain, state_home(home) / f"validator-{account.address}.cursor.json", confirmations
    )

    def handle(event) -> None:
        try:
            done = worker.handle(event)
        except FlchainError as exc:  # a bad blob is reported, not attested, and the validator goes on
            err_console.print(f"round {event.args.get('round')} of task {event.args.get('task')}: {exc}")
            return
        if done is not None:
            console.print(
                f"attested task {done.task} round {done.round}: accuracy {100 * done.accuracy:.2f} %, "
                f"hash {_short(done.model_hash)}, tx {_short(done.tx)}"
            )

    if once:
        for event in watcher.poll():
            handle(event)
        return
    console.print(f"validator {account.address} watching {chain.deployment.rpc_url}; Ctrl-C to stop")
    try:
        watcher.run(
            handle, on_retry=lambda m, w: err_console.print(f"RPC unavailable ({m}); retry in {w:.1f} s")
        )
    except KeyboardInterrupt:
        console.print("stopped")
