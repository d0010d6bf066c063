"""What flchain costs on top of plain Flower: the same Flower App with and without its flchain lines,
side by side in one invocation, on the Deployment Engine (SuperLink + SuperNodes on loopback; flchain's
nodes either plain `flower-supernode`s given the key, or `flchain client`s: engine `deployment-client`) and
on the Simulation Engine (`flwr run` against a `--simulation` SuperLink, and the deprecated in-process
`run_simulation` that `flchain demo` uses, to decide which of the two the demo should take).

The plain variant is a copy of the app with the flchain lines removed (those marked `# flchain` and the
`fl_chain` imports; `ClientApp(mods=[...])  # flchain` becomes `ClientApp()`), so both run the same app
code, data and Flower processes. Every repeat runs both variants back to back (alternating which goes
first), and the table reports the median of the paired ratios (these machines are noisy).

Per training round, from the ServerApp's own timestamps (FLWR_LOG_LEVEL=DEBUG adds them):
- wall: time between consecutive "[ROUND k/N]" lines, the last round ending at "Strategy execution
  finished"; the median over rounds 2..N (round 1 pays the first app processes' start);
- CPU: user + system seconds of every process the run used (chain node, SuperLink, SuperNodes, their
  SuperExec and app processes), sampled four times a second from /proc via psutil, over the same interval;
- peak memory: the largest sum of their resident set sizes seen during the run.

Usage: .venv/bin/python bench/overhead.py [--app examples/cnn-digits] [--nodes 3] [--rounds 8]
       [--repeats 3] [--engines deployment,deployment-client,simulation,run_simulation]
       [--out docs/overhead]
       [--from-json OUT.json]   (rewrite OUT.md from saved runs)
Writes OUT.md and OUT.json. Takes ~40 min with the defaults.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fl_chain.chain.identity import PASSWORD_ENV  # noqa: E402
from fl_chain.chain.setup import bootstrap  # noqa: E402
from fl_chain.chain.setup.localnode import free_port  # noqa: E402
from fl_chain.node.simulated_keys import ENV_VAR as SIMULATED_KEYS_ENV  # noqa: E402
from fl_chain.node.simulated_keys import RUN_CONFIG_KEY, write_simulated_keys  # noqa: E402
from fl_chain.runners.processes import (  # noqa: E402
    Managed,
    format_node_config,
    spawn,
    start_simulation_superlink,
    start_superlink,
    start_supernode,
    write_flwr_home,
)

PASSWORD = "overhead-bench"
ROUND_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}).*\[ROUND (\d+)/(\d+)\]")
END_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}).*Strategy execution finished")
console = Console()


@dataclass
class RunResult:
    """One run of one variant: per-round wall and CPU seconds and the run's peak memory."""

    engine: str
    variant: str
    repeat: int
    round_wall: list[float]
    round_cpu: list[float]
    peak_rss_mb: float
    total_s: float

    @property
    def wall(self) -> float:
        """Median wall seconds of a steady round (rounds 2..N)."""
        return statistics.median(self.round_wall[1:] or self.round_wall)

    @property
    def cpu(self) -> float:
        """Median CPU seconds of a steady round."""
        return statistics.median(self.round_cpu[1:] or self.round_cpu)


def plain_variant(app: Path, dest: Path) -> int:
    """Copy `app` to `dest` without its flchain lines; returns how many lines were removed or changed."""
    shutil.copytree(app, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    changed = 0
    for source in dest.rglob("*.py"):
        lines = []
        for line in source.read_text().splitlines(keepends=True):
            if line.startswith(("from fl_chain", "import fl_chain")):
                changed += 1
            elif "# flchain" in line:
                changed += 1
                if "ClientApp(" in line:
                    lines.append(
                        re.sub(r"ClientApp\(.*\)", "ClientApp()", line.split("  # flchain")[0]) + "\n"
                    )
            else:
                lines.append(line)
        source.write_text("".join(lines))
        if "fl_chain" in source.read_text().replace("flchain", ""):
            raise SystemExit(f"{source}: flchain code left after removing the marked lines")
    return changed


def declare_run_config(pyproject: Path, keys: tuple[str, ...]) -> None:
    """Declare flchain's run-config keys in an app's [tool.flwr.app.config] (Flower refuses run-config
    overrides of undeclared keys), as a user running `flwr run` outside `flchain server` does."""
    text = pyproject.read_text()
    header = "[tool.flwr.app.config]\n"
    if header not in text:
        raise SystemExit(f"{pyproject}: no [tool.flwr.app.config] table")
    missing = "".join(f'{key} = ""\n' for key in keys if f"{key} =" not in text)
    pyproject.write_text(text.replace(header, header + missing, 1))


class TreeSampler:
    """Samples CPU seconds and resident memory of process trees (four times a second) until stopped."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = list(roots)
        self.samples: list[tuple[float, float]] = []  # (wall clock, cumulative CPU seconds)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def add_root(self, pid: int) -> None:
        """Also sample this process tree (a process started after sampling began)."""
        self.roots.append(pid)

    def start(self) -> TreeSampler:
        """Begin sampling in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop (nothing to do if sampling never started)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def cpu_at(self, when: float) -> float:
        """Cumulative CPU seconds at wall-clock time `when` (the nearest sample at or before it)."""
        before = [cpu for t, cpu in self.samples if t <= when]
        return before[-1] if before else 0.0

    def _loop(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(0.25):
                self._sample()
                return

    def _sample(self) -> None:
        # An ended process's CPU is not lost: its parent (the SuperExec for app processes, raylet for
        # Ray workers) reaps it, and the kernel adds it to the parent's children_* times.
        cpu = 0.0
        rss = 0
        for root in self.roots:
            try:
                tree = [psutil.Process(root)]
                tree += tree[0].children(recursive=True)
            except psutil.Error:
                continue
            for proc in tree:
                try:
                    times = proc.cpu_times()
                    # children_* hold the CPU of app processes the SuperExec already reaped
                    cpu += times.user + times.system + times.children_user + times.children_system
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
        self.samples.append((time.time(), cpu))
        self.peak_rss = max(self.peak_rss, rss)


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def round_times(log: str, last_end: float | None = None) -> list[tuple[float, float]]:
    """(start, end) wall-clock times of each training round in a ServerApp log with timestamps;
    `last_end` stands for the last round's end in a log cut before Flower's closing line."""
    starts = [_stamp(m.group(1)) for m in ROUND_LINE.finditer(log)]
    end = END_LINE.search(log)
    last = _stamp(end.group(1)) if end is not None else last_end
    if not starts or last is None:
        raise RuntimeError("no round timestamps in the ServerApp log (did the run fail?)")
    return list(itertools.pairwise([*starts, last]))


@dataclass
class Setup:
    """What both variants share: the chain, node keys and the two app copies."""

    work: Path
    deployment: Path
    store: Path
    keystores: list[Path]
    keys: list[str]
    apps: dict[str, Path]
    chain_pid: int
    run_config: dict[str, str | int | float] = field(default_factory=dict)


def deployment_run(setup: Setup, variant: str, repeat: int, nodes: int, by_client: bool = False) -> RunResult:
    """One run on the Deployment Engine: a SuperLink, `nodes` SuperNodes and `flwr run`. flchain's nodes
    are plain `flower-supernode`s given the keystore and its password (each message's app process
    decrypts the key), or with `by_client` `flchain client` processes (the key stays in the client's
    signing agent; the apps never see it)."""
    engine = "deployment-client" if by_client else "deployment"
    run_dir = setup.work / f"{engine}-{variant}-{repeat}"
    flchain = variant == "flchain"
    env = {"FLWR_LOG_LEVEL": "DEBUG", PASSWORD_ENV: PASSWORD}
    port = free_port()
    processes: list[Managed] = []
    sampler = TreeSampler([setup.chain_pid] if flchain else [])
    try:
        link = start_superlink("127.0.0.1", port, run_dir / "superlink.log", None, env)
        processes.append(link)
        sampler.add_root(link.pid)
        for i in range(nodes):
            if flchain and by_client:
                command = [sys.executable, "-m", "fl_chain", "client", "--key", str(setup.keystores[i])]
                command += ["--superlink", f"127.0.0.1:{port}", "--partition", f"{i}/{nodes}"]
                command += ["--deployment", str(setup.deployment), "--home", str(run_dir / f"home{i}")]
                node = spawn(f"flchain client {i}", command, run_dir / f"node{i}.log", env)
                processes.append(node)
                sampler.add_root(node.pid)
                continue
            node_config: dict[str, str | int | float] = {"partition-id": i, "num-partitions": nodes}
            if flchain:
                node_config |= {
                    "flchain-deployment": str(setup.deployment),
                    "flchain-key": str(setup.keystores[i]),
                }
            node = start_supernode(
                f"127.0.0.1:{port}", free_port(), node_config, run_dir / f"node{i}.log", None, env
            )
            processes.append(node)
            sampler.add_root(node.pid)
        run_config = dict(setup.run_config)
        if flchain:
            run_config |= {"flchain-deployment": str(setup.deployment), "flchain-store": str(setup.store)}
        home = write_flwr_home(run_dir / "flwr-home", f"127.0.0.1:{port}")
        return _submit(setup, variant, engine, repeat, run_dir, home, run_config, sampler, processes)
    finally:
        sampler.stop()
        for proc in reversed(processes):
            proc.stop()


def simulation_run(setup: Setup, variant: str, repeat: int, nodes: int) -> RunResult:
    """One run on the Simulation Engine: `flwr run` against a SuperLink started with --simulation."""
    run_dir = setup.work / f"simulation-{variant}-{repeat}"
    flchain = variant == "flchain"
    env = {"FLWR_LOG_LEVEL": "DEBUG"}
    port = free_port()
    processes: list[Managed] = []
    sampler = TreeSampler([setup.chain_pid] if flchain else [])
    try:
        link = start_simulation_superlink(port, run_dir / "superlink.log", env)
        processes.append(link)
        sampler.add_root(link.pid)
        run_config = dict(setup.run_config)
        if flchain:
            keys = write_simulated_keys(run_dir / "simulated-keys.json", setup.deployment, setup.keys[:nodes])
            run_config |= {
                "flchain-deployment": str(setup.deployment),
                "flchain-store": str(setup.store),
                RUN_CONFIG_KEY: str(keys),
            }
        home = write_flwr_home(run_dir / "flwr-home", f"127.0.0.1:{port}")
        # one CPU per simulated node, as flchain demo and run_simulation_app.py give it
        extra = ["--federation-config", f"num-supernodes={nodes} client-resources-num-cpus=1"]
        return _submit(
            setup, variant, "simulation", repeat, run_dir, home, run_config, sampler, processes, extra
        )
    finally:
        sampler.stop()
        for proc in reversed(processes):
            proc.stop()


def run_simulation_run(setup: Setup, variant: str, repeat: int, nodes: int) -> RunResult:
    """One run with the deprecated in-process `run_simulation` (bench/run_simulation_app.py), the path
    `flchain demo` takes: measured to decide whether the demo should move to `flwr run`."""
    run_dir = setup.work / f"run_simulation-{variant}-{repeat}"
    run_dir.mkdir(parents=True, exist_ok=True)
    flchain = variant == "flchain"
    env = {**os.environ, "FLWR_LOG_LEVEL": "DEBUG"}
    run_config = dict(setup.run_config)
    if flchain:
        keys = write_simulated_keys(run_dir / "simulated-keys.json", setup.deployment, setup.keys[:nodes])
        env[SIMULATED_KEYS_ENV] = str(keys)
        run_config |= {"flchain-deployment": str(setup.deployment), "flchain-store": str(setup.store)}
    log = run_dir / "serverapp.log"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "run_simulation_app.py"),
        str(setup.apps[variant]),
        str(nodes),
    ]
    cmd.append(json.dumps(run_config))
    sampler = TreeSampler([setup.chain_pid] if flchain else [])
    started = time.time()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    sampler.add_root(proc.pid)
    sampler.start()
    try:
        returncode = proc.wait(timeout=1200)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        sampler.stop()
    return result_from_log(variant, "run_simulation", repeat, log, returncode, time.time() - started, sampler)


def _submit(
    setup: Setup,
    variant: str,
    engine: str,
    repeat: int,
    run_dir: Path,
    flwr_home: Path,
    run_config: dict[str, str | int | float],
    sampler: TreeSampler,
    processes: list[Managed],
    extra: list[str] | None = None,
) -> RunResult:
    log = run_dir / "serverapp.log"
    cmd = [str(Path(sys.executable).parent / "flwr"), "run", str(setup.apps[variant]), "flchain", "--stream"]
    cmd += ["--run-config", format_node_config(run_config), *(extra or [])]  # same k=v syntax
    sampler.start()
    started = time.time()
    result = subprocess.run(
        cmd,
        env={**os.environ, "FLWR_HOME": str(flwr_home)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        timeout=1200,
        check=False,
    )
    total = time.time() - started
    time.sleep(0.5)  # one more sample after the last round
    sampler.stop()
    return result_from_log(variant, engine, repeat, log, result.returncode, total, sampler)


def result_from_log(
    variant: str,
    engine: str,
    repeat: int,
    log: Path,
    returncode: int,
    total: float,
    sampler: TreeSampler,
    last_end: float | None = None,
) -> RunResult:
    """A run's per-round figures from its ServerApp log and CPU samples (a one-line failure unless the
    run succeeded); `last_end`: see `round_times`."""
    text = log.read_text(errors="replace")
    if returncode != 0 or ("Strategy execution finished" not in text and last_end is None):
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"{engine} {variant} run {repeat} failed (see {log}):\n{tail}")
    rounds = round_times(text, last_end)
    walls = [end - start for start, end in rounds]
    cpus = [sampler.cpu_at(end) - sampler.cpu_at(start) for start, end in rounds]
    return RunResult(engine, variant, repeat, walls, cpus, sampler.peak_rss / 2**20, total)


def chain_with_nodes(work: Path, nodes: int) -> tuple[bootstrap.LocalDeployment, Setup]:
    """A local chain (WORK/chain/deployment.json) with `nodes` registered, approved node keys: keystores
    encrypted with PASSWORD under WORK/keys (SuperNodes, `flchain client`) and the raw keys (simulated
    nodes). The Setup has no apps yet."""
    from eth_account import Account

    local = bootstrap.start_local(work / "chain")
    try:
        accounts = bootstrap.register_nodes(local.client, nodes)
    except BaseException:
        local.stop()
        raise
    keystores = []
    for i, account in enumerate(accounts):
        path = work / "keys" / f"node{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(Account.encrypt(account.key, PASSWORD)))
        keystores.append(path)
    setup = Setup(
        work=work,
        deployment=work / "chain" / "deployment.json",
        store=work / "store",
        keystores=keystores,
        keys=["0x" + a.key.hex().removeprefix("0x") for a in accounts],
        apps={},
        chain_pid=local.process.pid,
    )
    return local, setup


def prepare(work: Path, app: Path, nodes: int) -> tuple[Setup, bootstrap.LocalDeployment, int]:
    """Chain, registered node keys (keystores for SuperNodes, raw keys for simulated nodes), both apps."""
    local, setup = chain_with_nodes(work, nodes)
    apps = {"flchain": work / "app-flchain", "plain": work / "app-plain"}
    try:
        shutil.copytree(app, apps["flchain"], ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        declare_run_config(
            apps["flchain"] / "pyproject.toml", ("flchain-deployment", "flchain-store", RUN_CONFIG_KEY)
        )
        changed = plain_variant(app, apps["plain"])
    except BaseException:  # SystemExit included: the chain started above is stopped by its PID
        local.stop()
        raise
    setup.apps = apps
    return setup, local, changed


def run_cells(r: RunResult) -> str:
    """A run's wall and CPU seconds per round, peak RSS MB and run seconds, as markdown table cells."""
    walls = " ".join(f"{w:.2f}" for w in r.round_wall)
    cpus = " ".join(f"{c:.2f}" for c in r.round_cpu)
    return f"{walls} | {cpus} | {r.peak_rss_mb:.0f} | {r.total_s:.1f}"


def summarize(results: list[RunResult]) -> list[dict]:
    """Per engine: medians of each variant and the median of the paired ratios."""
    rows = []
    for engine in sorted({r.engine for r in results}):
        pairs = []
        for repeat in sorted({r.repeat for r in results if r.engine == engine}):
            by = {r.variant: r for r in results if r.engine == engine and r.repeat == repeat}
            if {"plain", "flchain"} <= set(by):
                pairs.append((by["plain"], by["flchain"]))
        if not pairs:
            continue
        row: dict = {"engine": engine, "pairs": len(pairs)}
        for metric, get in (
            ("wall", lambda r: r.wall),
            ("cpu", lambda r: r.cpu),
            ("rss", lambda r: r.peak_rss_mb),
        ):
            row[f"{metric}_plain"] = statistics.median(get(p) for p, _ in pairs)
            row[f"{metric}_flchain"] = statistics.median(get(f) for _, f in pairs)
            row[f"{metric}_ratio"] = statistics.median(get(f) / get(p) for p, f in pairs)
        rows.append(row)
    return rows


def simulation_paths(results: list[RunResult]) -> list[str]:
    """Markdown comparing the two ways to run the Simulation Engine, per variant (medians over repeats)."""
    engines = ("simulation", "run_simulation")
    if not all(any(r.engine == e for r in results) for e in engines):
        return []
    lines = [
        "",
        "## Simulation: `flwr run` against a simulation SuperLink vs the deprecated `run_simulation`",
        "",
        "| variant | run s, flwr run | run s, run_simulation | round s, flwr run | round s, run_simulation |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant in ("plain", "flchain"):
        runs = {e: [r for r in results if r.engine == e and r.variant == variant] for e in engines}
        total = {e: statistics.median(r.total_s for r in runs[e]) for e in engines}
        wall = {e: statistics.median(r.wall for r in runs[e]) for e in engines}
        lines.append(
            f"| {variant} | {total['simulation']:.1f} | {total['run_simulation']:.1f} | "
            f"{wall['simulation']:.2f} | {wall['run_simulation']:.2f} |"
        )
    return lines


def write_report(
    out: Path, args: argparse.Namespace, results: list[RunResult], rows: list[dict], changed: int
) -> None:
    """OUT.json with every run, OUT.md with the table."""
    targets = {"deployment": 1.10, "deployment-client": 1.10, "simulation": 1.05, "run_simulation": 1.05}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "runs": [asdict(r) for r in results],
                "summary": rows,
            },
            indent=1,
        )
    )
    lines = [
        "# flchain's overhead over plain Flower",
        "",
        f"Measured by `bench/overhead.py` on {os.cpu_count()} cores: the Flower App "
        f"`examples/{Path(args.app).name}` (local-epochs={args.local_epochs}) with its "
        f"flchain lines ({changed} lines: the `fl_chain` imports and the lines marked `# flchain`) and "
        f"without them, {args.nodes} nodes, {args.rounds} rounds, {args.repeats} paired repeats per engine "
        "(the two variants back to back, alternating which goes first). Per steady training round (rounds "
        "2..N, from the ServerApp's own log timestamps): wall seconds, CPU seconds of every process the run "
        "used (flchain's runs include the chain node), and the run's peak resident memory summed over those "
        "processes. Ratios are medians of the paired ratios.",
        "",
        "| engine | wall plain s | wall flchain s | wall ratio | target | CPU plain s | CPU flchain s "
        "| CPU ratio | peak RSS plain MB | peak RSS flchain MB | RSS ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table = Table(title="flchain / plain Flower per training round (median of paired runs)")
    for col in ("engine", "wall plain", "wall flchain", "ratio", "target", "CPU ratio", "RSS ratio"):
        table.add_column(col, justify="right")
    for r in rows:
        target = targets.get(r["engine"], 0)
        lines.append(
            f"| {r['engine']} | {r['wall_plain']:.2f} | {r['wall_flchain']:.2f} | {r['wall_ratio']:.3f} | "
            f"≤ {target:.2f} | {r['cpu_plain']:.2f} | {r['cpu_flchain']:.2f} | {r['cpu_ratio']:.3f} | "
            f"{r['rss_plain']:.0f} | {r['rss_flchain']:.0f} | {r['rss_ratio']:.3f} |"
        )
        table.add_row(
            r["engine"],
            f"{r['wall_plain']:.2f}",
            f"{r['wall_flchain']:.2f}",
            f"{r['wall_ratio']:.3f}",
            f"≤ {target:.2f}",
            f"{r['cpu_ratio']:.3f}",
            f"{r['rss_ratio']:.3f}",
        )
    lines += [
        "",
        "## What flchain adds to a round, and what shapes the figures",
        "",
        "- Server, per round: one transaction (`commitRound`: gas estimate, send, receipt), the model "
        "written to the store (fsynced) and hashed, reputations of the known nodes in one batched read; "
        "with a `root_fn` (cnn-digits has one) the server's own training on its root set, which runs "
        "while the nodes train.",
        "- Node, per training message: the flchain mod imports no web3 (Flower starts a new process per "
        "message), reads chain id, its status, the task's configHash and the parent round's hash in one "
        "JSON-RPC batch, hashes the received model and has its update signed (secp256k1 in compiled "
        "code, coincurve: recovering a signer takes 0.03 ms, 3.5 ms in eth-keys' pure-Python fallback, and "
        "the coordinator recovers one per reply: docs/signing.md). Who signs is what separates the two "
        "Deployment rows: "
        "`deployment` runs plain `flower-supernode`s given the keystore and FLCHAIN_KEY_PASSWORD, so every "
        "message's app process decrypts the keystore itself (scrypt with n = 2^18: 0.7 s of CPU and "
        "256 MB of memory per message here, docs/signing.md; most of that row's extra CPU and memory); "
        "`deployment-client` runs the nodes with `flchain client`, the recommended deployment, whose "
        "signing agent decrypted the key once and signs for the app over a Unix socket (the app never "
        "holds the key).",
        "- Flower's own `send_and_receive` polls for replies every 3 s, and a SuperNode asks for work every "
        "3 s; a Deployment round therefore lasts a whole number of those polls, and a few hundred "
        "milliseconds can move it by one. flchain's rounds poll for replies after a tenth of the time "
        "waited so far, between 0.02 s and 0.5 s (fl_chain/coordinator/deadline_grid.py), so they end "
        "at most ~10 % after the last reply is in. The Simulation Engine hands a node its message on a "
        "0.1 s tick and the plain App's grid polls every 0.1 s: simulated rounds come in steps of 0.1 s.",
        "- CPU is sampled four times a second: for simulated rounds of a few tenths of a second the CPU "
        "figures are rough; the wall times come from the ServerApp's own timestamps.",
    ]
    lines += simulation_paths(results)
    lines += ["", "Every run (wall and CPU seconds per round, rounds 1..N):", ""]
    lines += [
        "| engine | variant | repeat | wall per round | CPU per round | peak RSS MB | run s |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.engine} | {r.variant} | {r.repeat} | {run_cells(r)} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print(table)
    console.print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so the `finally` blocks stop every process started


def rewrite_report(saved: Path, out: Path) -> None:
    """The report again from saved runs (for a changed report layout; nothing is re-measured)."""
    data = json.loads(saved.read_text())
    results = [RunResult(**run) for run in data["runs"]]
    args = argparse.Namespace(**data["args"])
    for name in ("nodes", "rounds", "repeats"):
        setattr(args, name, int(getattr(args, name)))
    app = Path(args.app) if Path(args.app).exists() else ROOT / "examples" / Path(args.app).name
    with tempfile.TemporaryDirectory() as tmp:
        changed = plain_variant(app, Path(tmp) / "plain")
    write_report(out, args, results, summarize(results), changed)


def main() -> None:
    """Measure both variants on each engine and write the report."""
    signal.signal(signal.SIGTERM, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, default=ROOT / "examples" / "cnn-digits")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--engines", default="deployment,deployment-client,simulation,run_simulation")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "overhead")
    parser.add_argument("--from-json", type=Path, help="rewrite OUT.md from the runs of a saved OUT.json")
    args = parser.parse_args()
    if args.from_json is not None:
        rewrite_report(args.from_json, args.out)
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    runners = {
        "deployment": deployment_run,
        "deployment-client": lambda *a: deployment_run(*a, by_client=True),
        "simulation": simulation_run,
        "run_simulation": run_simulation_run,
    }
    if unknown := set(engines) - set(runners):
        raise SystemExit(f"--engines: unknown {sorted(unknown)} (expected {', '.join(runners)})")
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="flchain-overhead-") as tmp:
        setup, local, changed = prepare(Path(tmp), args.app.resolve(), args.nodes)
        setup.run_config = {
            "num-server-rounds": args.rounds,
            "local-epochs": args.local_epochs,
            "min-nodes": args.nodes,
        }
        try:
            for engine in engines:
                for repeat in range(args.repeats):
                    order = ("plain", "flchain") if repeat % 2 == 0 else ("flchain", "plain")
                    for variant in order:
                        console.print(f"{engine} {variant} run {repeat + 1}/{args.repeats} ...")
                        result = runners[engine](setup, variant, repeat, args.nodes)
                        console.print(
                            f"  round wall {result.wall:.2f} s, CPU {result.cpu:.2f} s, "
                            f"peak RSS {result.peak_rss_mb:.0f} MB"
                        )
                        results.append(result)
        finally:
            local.stop()
    write_report(args.out, args, results, summarize(results), changed)


if __name__ == "__main__":
    main()
