"""What flchain's own `flchain server` path costs on top of plain Flower: the built-in digits task run by
`flchain server` (flchain's ServerApp, with the server's own root-set training) and N `flchain client`
nodes, as the one-machine recipe starts them, against the same workload as a plain Flower App
(bench/apps/digits-plain: the built-in task's model, partitions, local training and test split, FedAvg,
no flchain), both on the Deployment Engine on loopback; and `flchain server` with its root training on
one torch thread or turned off by configuration, which say what that training costs and how to place it.

Variants, each run from scratch on one chain (the chain node is counted in flchain's figures):
- plain: a SuperLink, N SuperNodes and `flwr run bench/apps/digits-plain` (bench/overhead.py's
  `deployment_run`);
- flchain: `flchain server --config run.toml` and N `flchain client --key ... --partition i/N`
  processes; run.toml holds the chain's deployment file, the rounds, min_nodes = N (every round trains
  every node) and local_epochs, everything else as configs/demo.toml (the defaults);
- flchain-1thread: the same with OMP_NUM_THREADS=1 in `flchain server`'s environment (its ServerApp's
  torch on one intra-op thread; the nodes keep torch's default);
- flchain-noroot: flchain with `[scoring] method = "cosine"`, `evidence = false`, `step_ratio = 0.0`,
  the settings under which the coordinator needs no root update g0 and trains nothing
  (fl_chain/coordinator/train_round.py `needed`); the run's reports must show it (no `anchor` phase).

Every repeat runs the variants back to back, the order reversed on odd repeats. Before the runs, one
round's root training is timed alone in this process (torch's default threads and one thread). Per
training round (bench/overhead.py's measures: the ServerApp log's timestamps, CPU of every process of
the run sampled four times a second, peak summed RSS): the median over rounds 2..N, then the median of
the paired ratios over repeats; flchain's runs also give the coordinator's per-phase seconds from their
round reports.

Usage: .venv/bin/python bench/server_path.py [--nodes 3] [--rounds 6] [--repeats 3] [--local-epochs 5]
       [--variants plain,flchain,flchain-1thread,flchain-noroot] [--out docs/server-path]
       [--work DIR (keep the runs' logs)] [--from-json OUT.json]   (rewrite OUT.md from saved runs)
Writes OUT.md and OUT.json. Takes ~30 min with the defaults on 2 cores (~2 min per run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import overhead  # noqa: E402

from fl_chain.chain.identity import PASSWORD_ENV  # noqa: E402
from fl_chain.chain.setup.localnode import free_port  # noqa: E402
from fl_chain.config import load_config  # noqa: E402
from fl_chain.runners.processes import Managed, spawn  # noqa: E402
from fl_chain.wire.report import RoundReport, read_reports  # noqa: E402

APP = ROOT / "bench" / "apps" / "digits-plain"
FLCHAIN = [sys.executable, "-m", "fl_chain"]
# flchain's variants: whether the server trains on its root set, and what `flchain server` (and so its
# SuperLink and ServerApp processes) gets in its environment: OMP_NUM_THREADS=1 gives the ServerApp's
# torch one intra-op thread (the nodes keep torch's default)
FLCHAIN_VARIANTS = {
    "flchain": (True, {}),
    "flchain-1thread": (True, {"OMP_NUM_THREADS": "1"}),
    "flchain-noroot": (False, {}),
}
VARIANTS = ("plain", *FLCHAIN_VARIANTS)
# (variant, baseline) per table row: flchain's path against plain Flower, and against itself without
# the root training (the rows that price that training)
COMPARISONS = {
    "flchain / plain": ("flchain", "plain"),
    "flchain-1thread / plain": ("flchain-1thread", "plain"),
    "flchain-noroot / plain": ("flchain-noroot", "plain"),
    "flchain / flchain-noroot": ("flchain", "flchain-noroot"),
    "flchain-1thread / flchain-noroot": ("flchain-1thread", "flchain-noroot"),
}
NO_ROOT = '[scoring]\nmethod = "cosine"\nevidence = false\nstep_ratio = 0.0\n'
PHASES = ("join", "train", "anchor", "screen", "score", "model_hash", "store", "commit")
# Flower's log line of each round's evaluate_fn result (the plain app returns loss, then accuracy)
EVALUATED = re.compile(r"MetricRecord: \{'loss': [-+.e\d]+, 'accuracy': ([-+.e\d]+)\}")
TARGET = 1.10  # issue 28: per-round wall ratio of the Deployment Engine path
console = Console()


@dataclass
class Measured:
    """One run: bench/overhead.py's per-round figures, the test accuracy after each round (the variants
    must train the same models), and flchain's per-phase seconds per round."""

    run: overhead.RunResult
    accuracy: list[float]
    phases: dict[str, list[float]] = field(default_factory=dict)


def write_config(path: Path, deployment: Path, args: argparse.Namespace, root: bool) -> Path:
    """`flchain server`'s run.toml: the defaults (configs/demo.toml) but for the chain's deployment file,
    the rounds, min_nodes = every node and the local epochs; without the root training if not `root`."""
    text = (
        f'[chain]\ndeployment = "{deployment}"\n\n'
        f"[federation]\nrounds = {args.rounds}\nmin_nodes = {args.nodes}\n\n"
        f"[task]\nlocal_epochs = {args.local_epochs}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + ("" if root else "\n" + NO_ROOT))
    load_config(path)  # a field this bench sets that flchain no longer knows fails here, not in the run
    return path


def flchain_run(setup: overhead.Setup, variant: str, repeat: int, args: argparse.Namespace) -> Measured:
    """`flchain server` and `args.nodes` `flchain client` processes sharing one FLCHAIN home (the
    one-machine recipe), until the server ends; everything started is stopped by PID whatever happens."""
    run_dir = setup.work / f"{variant}-{repeat}"
    home = run_dir / "home"
    root, server_env = FLCHAIN_VARIANTS[variant]
    config = write_config(run_dir / "run.toml", setup.deployment, args, root)
    env = {"FLWR_LOG_LEVEL": "DEBUG", PASSWORD_ENV: overhead.PASSWORD, "PYTHONUNBUFFERED": "1"}
    port = free_port()
    processes: list[Managed] = []
    sampler = overhead.TreeSampler([setup.chain_pid]).start()
    try:
        server_cmd = [*FLCHAIN, "server", "--config", str(config), "--port", str(port), "--home", str(home)]
        processes.append(spawn("flchain server", server_cmd, run_dir / "server.out", env | server_env))
        for i, key in enumerate(setup.keystores[: args.nodes]):
            client_cmd = [*FLCHAIN, "client", "--key", str(key), "--superlink", f"127.0.0.1:{port}"]
            client_cmd += ["--partition", f"{i}/{args.nodes}", "--deployment", str(setup.deployment)]
            processes.append(
                spawn(
                    f"flchain client {i}", [*client_cmd, "--home", str(home)], run_dir / f"client{i}.out", env
                )
            )
        for proc in processes:
            sampler.add_root(proc.pid)
        started = time.time()
        server = processes[0].proc
        server.wait(timeout=300 + 120 * args.rounds)
        total = time.time() - started
        time.sleep(0.5)  # one more sample after the last round
        sampler.stop()
        logs = sorted(home.glob("runs/*/serverapp.log"))
        if server.returncode != 0 or len(logs) != 1:
            tail = (run_dir / "server.out").read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"{variant} run {repeat} failed (see {run_dir}):\n" + "\n".join(tail))
        # `flchain server` stops `flwr run --stream` once the ServerApp's last run event is in, which can
        # cut the log before Flower's closing line: then the last round ends when that event was written.
        events = logs[0].with_name("rounds.jsonl")
        last_end = events.stat().st_mtime
        run = overhead.result_from_log(
            variant, "deployment", repeat, logs[0], server.returncode, total, sampler, last_end
        )
    finally:
        sampler.stop()
        for proc in reversed(processes):
            proc.stop()
    reports = read_reports(events)[1:]  # round 0 is the initial model
    if len(run.round_wall) != args.rounds or len(reports) != args.rounds:
        raise RuntimeError(f"{variant} run {repeat}: expected {args.rounds} rounds (see {run_dir})")
    return Measured(run, [r.accuracy for r in reports], phases_of(reports, variant))


def phases_of(reports: list[RoundReport], variant: str) -> dict[str, list[float]]:
    """Per phase, the seconds of each training round from the run's round reports; checks that the
    root training ran exactly in the variant that has it (the report's `anchor` phase)."""
    trained_root = all("anchor" in r.seconds for r in reports)
    if trained_root != FLCHAIN_VARIANTS[variant][0] or not reports:
        raise RuntimeError(f"{variant}: root training {'ran' if trained_root else 'did not run'}")
    return {k: [r.seconds.get(k, 0.0) for r in reports] for k in PHASES}


def plain_run(setup: overhead.Setup, repeat: int, args: argparse.Namespace) -> Measured:
    """The plain Flower App on a SuperLink and `args.nodes` SuperNodes (bench/overhead.py's runner)."""
    run = overhead.deployment_run(setup, "plain", repeat, args.nodes)
    log = (setup.work / f"deployment-plain-{repeat}" / "serverapp.log").read_text(errors="replace")
    return Measured(run, [float(a) for a in EVALUATED.findall(log)])


def _steady(values: list[float]) -> float:
    """Median of rounds 2..N (round 1 pays the first app processes' start)."""
    return statistics.median(values[1:] or values) if values else 0.0


def summarize(runs: list[Measured]) -> list[dict]:
    """One row per comparison: bench/overhead.py's paired medians (variant as "flchain", baseline as
    "plain"), plus the differences of the medians in seconds."""
    rows = []
    for label, (variant, baseline) in COMPARISONS.items():
        roles = {baseline: "plain", variant: "flchain"}
        paired = [
            replace(m.run, engine=label, variant=roles[m.run.variant]) for m in runs if m.run.variant in roles
        ]
        for row in overhead.summarize(paired):
            row["wall_diff"] = row["wall_flchain"] - row["wall_plain"]
            row["cpu_diff"] = row["cpu_flchain"] - row["cpu_plain"]
            rows.append({"comparison": label, "variant": variant, "baseline": baseline, **row})
    return rows


def phase_rows(runs: list[Measured]) -> dict[str, dict[str, float]]:
    """Per flchain variant, the median over repeats of each phase's steady-round seconds."""
    table = {}
    for variant in VARIANTS[1:]:
        mine = [m for m in runs if m.run.variant == variant]
        if mine:
            table[variant] = {
                k: statistics.median(_steady(m.phases.get(k, [])) for m in mine) for k in PHASES
            }
    return table


def root_work(nodes: int) -> str:
    """The root training's work per round against a node's, in samples x epochs (same epochs)."""
    from fl_chain.tasks.base import DataSpec
    from fl_chain.tasks.digits import digits_task

    task = digits_task()
    (x_val, _), _ = task.server_data(42)
    node = len(task.client_data(DataSpec(0, nodes, seed=42))[1])
    root = 2 * len(x_val)  # the whole root set, then each half of it
    return f"{root} samples per epoch ({len(x_val)} + both halves) against a node's {node} ({nodes} nodes)"


def report_lines(args: argparse.Namespace, results: Results, rows: list[dict]) -> list[str]:
    """The markdown page: method, the comparison table, the root training's cost and placement, every run."""
    runs = results.runs
    lines = [
        "# `flchain server` against plain Flower",
        "",
        f"Measured by `bench/server_path.py` on {os.cpu_count()} cores: the built-in digits task with "
        f"{args.nodes} nodes, {args.rounds} rounds, local_epochs = {args.local_epochs}, on the Deployment "
        "Engine on loopback, in these variants run back to back in each of "
        f"{args.repeats} repeats (the order reversed on odd repeats):",
        "",
        "- **plain**: a plain Flower App with no flchain (`bench/apps/digits-plain`: the built-in task's "
        "model, IID partitions, local training and test split, FedAvg over every node, an `evaluate_fn` on "
        "the test split), on a SuperLink and SuperNodes;",
        "- **flchain**: `flchain server --config run.toml` and one `flchain client --key K --partition "
        f"i/{args.nodes}` per node, sharing one home as on one machine; run.toml is configs/demo.toml's "
        "defaults but for the rounds, the epochs and `min_nodes` (every node in every round); the chain "
        "node's CPU and memory count in;",
        "- **flchain-1thread**: the same with `OMP_NUM_THREADS=1` in `flchain server`'s environment, which "
        "its SuperLink and ServerApp processes inherit: the server's torch (its root training) runs on one "
        "intra-op thread, the nodes keep torch's default;",
        '- **flchain-noroot**: the same as flchain with `[scoring] method = "cosine"`, `evidence = false`, '
        "`step_ratio = 0.0`: the coordinator then needs no root update and trains nothing (each run's round "
        "reports are checked for it).",
        "",
        "Per steady training round (rounds 2..N, from the ServerApp's own log timestamps): wall seconds, CPU "
        "seconds of every process of the run, and the run's peak resident memory summed over them. Ratios "
        "are medians of the paired ratios; Δ is the difference of the medians.",
        "",
        "| comparison | wall base s | wall s | wall ratio | target | Δ wall s | CPU base s | CPU s "
        "| CPU ratio | Δ CPU s | peak RSS base MB | peak RSS MB | RSS ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        target = f"≤ {TARGET:.2f}" if r["baseline"] == "plain" else ""
        lines.append(
            f"| {r['comparison']} | {r['wall_plain']:.2f} | {r['wall_flchain']:.2f} | {r['wall_ratio']:.3f} "
            f"| {target} | {r['wall_diff']:+.2f} | {r['cpu_plain']:.2f} | {r['cpu_flchain']:.2f} "
            f"| {r['cpu_ratio']:.3f} | {r['cpu_diff']:+.2f} | {r['rss_plain']:.0f} | {r['rss_flchain']:.0f} "
            f"| {r['rss_ratio']:.3f} |"
        )
    lines += ["", same_models(runs)]
    lines += root_section(results, rows, args.nodes)
    lines += ["", "## Every run (wall and CPU seconds per round, rounds 1..N)", ""]
    lines += [
        "| variant | repeat | wall per round | CPU per round | peak RSS MB | run s | final accuracy |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for m in runs:
        final = f"{m.accuracy[-1]:.4f}" if m.accuracy else "?"
        lines.append(f"| {m.run.variant} | {m.run.repeat} | {overhead.run_cells(m.run)} | {final} |")
    return lines


def same_models(runs: list[Measured]) -> str:
    """One sentence: whether every run had the same test accuracy after every round (the same workload:
    the variants differ in what surrounds training, not in the models they train)."""
    curves = {tuple(m.accuracy) for m in runs}
    if len(curves) == 1 and runs and runs[0].accuracy:
        return (
            "Every run trained the same models: the test accuracy after each round was identical in all "
            f"runs of all variants (final {runs[0].accuracy[-1]:.4f})."
        )
    finals = ", ".join(f"{m.run.variant} {m.accuracy[-1]:.4f}" for m in runs if m.accuracy)
    return f"The runs' test accuracies differ (final: {finals}): the variants did not train the same models."


def root_alone(local_epochs: int, repeats: int = 5) -> dict[str, float]:
    """One round's root training alone in this process, as flchain's ServerApp runs it (g0 and both
    halves: coordinator/server_app.py `task_evaluation`, the round's training config from the defaults):
    median wall and CPU seconds with torch's default intra-op threads and with one thread."""
    import torch

    from fl_chain.config import RunConfig
    from fl_chain.coordinator.server_app import task_evaluation
    from fl_chain.tasks import load_task

    defaults = RunConfig().task
    config = {
        "local-epochs": local_epochs,
        "lr": defaults.learning_rate,
        "batch-size": defaults.batch_size,
        "seed": defaults.seed,
    }
    task, threads = load_task("digits"), torch.get_num_threads()
    figures: dict[str, float] = {"threads": threads}
    try:
        for label, count in (("default", threads), ("one", 1)):
            torch.set_num_threads(count)
            samples = []
            for _ in range(repeats + 1):  # the first one warms torch up
                evaluation, initial = task_evaluation(task, defaults.seed)  # a fresh anchor: nothing cached
                wall, cpu = time.perf_counter(), time.process_time()
                evaluation.root.delta(initial, config)
                samples.append((time.perf_counter() - wall, time.process_time() - cpu))
            figures[f"wall_{label}"] = statistics.median(w for w, _ in samples[1:])
            figures[f"cpu_{label}"] = statistics.median(c for _, c in samples[1:])
    finally:
        torch.set_num_threads(threads)
    return figures


def root_section(results: Results, rows: list[dict], nodes: int) -> list[str]:
    """What the server's root training costs per round, where its time goes, and how to place it."""
    costs = [r for r in rows if r["baseline"] == "flchain-noroot"]
    alone, phases = results.alone, phase_rows(results.runs)
    lines = ["", "## The server's own training: what it costs and where to put it", ""]
    lines += [
        f"Each round `defence/anchor.py` trains g0 on the server's root set (the validation split) and once "
        f"on each half of it (the agreement that moves the evidence line), with the nodes' local settings: "
        f"{root_work(nodes)}.",
    ]
    if alone:
        lines[-1] += (
            f" Alone (in the bench's process, before the runs), one round's root training took "
            f"{alone['wall_default']:.3f} s wall and {alone['cpu_default']:.3f} s CPU with torch's default "
            f"{alone['threads']:.0f} intra-op threads, {alone['wall_one']:.3f} s and "
            f"{alone['cpu_one']:.3f} s with one thread."
        )
    for cost in costs:
        lines += [
            "",
            f"In the runs, with it against without ({cost['variant']} minus flchain-noroot, medians): "
            f"{cost['wall_diff']:+.2f} s wall per steady round (ratio {cost['wall_ratio']:.3f}), "
            f"{cost['cpu_diff']:+.2f} s CPU (ratio {cost['cpu_ratio']:.3f}).",
        ]
    if phases:
        lines += [
            "",
            "The coordinator's own time split (`seconds` of the round reports, median of steady rounds; "
            "`train` is sending the round and waiting for every reply, `anchor` the wait for the root "
            "training after the last reply):",
            "",
            "| variant | " + " | ".join(PHASES) + " |",
            "|---|" + "---:|" * len(PHASES),
        ]
        for variant, split in phases.items():
            lines.append(f"| {variant} | " + " | ".join(f"{split[k]:.2f}" for k in PHASES) + " |")
    return [*lines, "", *PLACEMENT]


PLACEMENT = [
    "Where to put it:",
    "",
    "- The root training runs in a thread of the ServerApp process from the moment a round's messages go "
    "out (`coordinator/root_round.py`), so it overlaps the nodes' training. A coordinator with cores of "
    "its own (its own machine, as in [multi-machine](multi-machine.md)) pays for it in wall time only when "
    "it outlasts the slowest node: the `anchor` column.",
    "- On one machine that also runs the nodes, the cores are shared while they train, so the root "
    "training's CPU (and its torch threads' waiting) lengthens their training whatever its priority; "
    "there the Δ above is the price. Its compute is small for the digits MLP: what torch's intra-op "
    "threads cost on busy cores is the difference between the two timings alone above, and "
    "`OMP_NUM_THREADS=1 flchain server ...` (the flchain-1thread rows) keeps the server's torch on one "
    "thread; give the server more threads only where it has cores of its own and a model that uses them.",
    "- Without it (the flchain-noroot settings; `clip_ratio = 0`, `backdoor_filter = false` and "
    '`aggregation = "plain"` are the defaults) scores are cosines with the median update instead of '
    "FLTrust trust, nobody is penalized on anchored evidence and a round's step is not bounded: fit for "
    "nodes that are trusted, not for a federation that must resist poisoning ([scoring](scoring.md), "
    "[attacks](attacks.md)). There is no setting for the halves alone or for evaluating every k rounds; "
    "the per-round test evaluation is one forward pass over the test split.",
    "",
    "What else shapes the figures: Flower's own `send_and_receive` (the plain app's rounds) polls for "
    "replies every 3 s and a SuperNode asks for work every 3 s, so a plain round lasts a whole number of "
    "polls and a few hundred milliseconds can move it by one; flchain's rounds poll for replies after a "
    "tenth of the time waited so far, between 0.02 s and 0.5 s (`coordinator/deadline_grid.py`). "
    "A flchain node's reply also waits "
    "until the round it trained from is on-chain (`node/parent_check.py`), while that commit overlaps "
    "its training; `flchain client` runs its SuperNode with `--isolation process` and starts the app "
    "processes itself, without the node's key (`runners/app_launcher.py`), where a plain SuperNode starts "
    "them as its own subprocesses.",
]


@dataclass
class Results:
    """Everything one invocation measured: the runs and the root training alone."""

    runs: list[Measured]
    alone: dict[str, float] = field(default_factory=dict)


def write_report(out: Path, args: argparse.Namespace, results: Results) -> None:
    """OUT.json with every run, OUT.md with the tables; the summary table printed."""
    rows = summarize(results.runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = {
        "args": {k: str(v) for k, v in vars(args).items() if k != "from_json"},
        "root_alone": results.alone,
        "runs": [asdict(m) for m in results.runs],
        "summary": rows,
        "phases": phase_rows(results.runs),
    }
    out.with_suffix(".json").write_text(json.dumps(saved, indent=1))
    out.with_suffix(".md").write_text("\n".join(report_lines(args, results, rows)) + "\n")
    table = Table(title="per steady training round, median of paired runs")
    for col in ("comparison", "wall base", "wall", "ratio", "target", "CPU ratio", "RSS ratio"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["comparison"],
            f"{r['wall_plain']:.2f}",
            f"{r['wall_flchain']:.2f}",
            f"{r['wall_ratio']:.3f}",
            f"≤ {TARGET:.2f}" if r["baseline"] == "plain" else "",
            f"{r['cpu_ratio']:.3f}",
            f"{r['rss_ratio']:.3f}",
        )
    console.print(table)
    console.print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


def rewrite_report(saved: Path, out: Path) -> None:
    """The report again from saved runs (nothing is re-measured)."""
    data = json.loads(saved.read_text())
    runs = [Measured(overhead.RunResult(**m["run"]), m["accuracy"], m["phases"]) for m in data["runs"]]
    args = argparse.Namespace(**{k: int(v) if v.isdigit() else v for k, v in data["args"].items()})
    write_report(out, args, Results(runs, data.get("root_alone", {})))


def measure(args: argparse.Namespace, work: Path) -> list[Measured]:
    """Every repeat's three runs on one chain, stopped by PID at the end whatever happens."""
    local, setup = overhead.chain_with_nodes(work, args.nodes)
    try:
        setup.apps = {"plain": work / "app-plain"}
        shutil.copytree(APP, setup.apps["plain"], ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        setup.run_config = {
            "num-server-rounds": args.rounds,
            "local-epochs": args.local_epochs,
            "min-nodes": args.nodes,
        }
        runs: list[Measured] = []
        for repeat in range(args.repeats):
            for variant in args.variants if repeat % 2 == 0 else args.variants[::-1]:
                console.print(f"{variant} run {repeat + 1}/{args.repeats} ...")
                m = (
                    plain_run(setup, repeat, args)
                    if variant == "plain"
                    else flchain_run(setup, variant, repeat, args)
                )
                console.print(
                    f"  round wall {m.run.wall:.2f} s, CPU {m.run.cpu:.2f} s, "
                    f"peak RSS {m.run.peak_rss_mb:.0f} MB"
                )
                runs.append(m)
        return runs
    finally:
        local.stop()


def main() -> None:
    """Measure the root training alone, then the variants, and write the report."""
    signal.signal(signal.SIGTERM, overhead._interrupted)  # so every `finally` stops what it started
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which of them to run, in this order")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "server-path")
    parser.add_argument("--from-json", type=Path, help="rewrite OUT.md from the runs of a saved OUT.json")
    parser.add_argument(
        "--work", type=Path, help="keep every run's files (logs, reports) in this new directory"
    )
    args = parser.parse_args()
    if args.from_json is not None:
        rewrite_report(args.from_json, args.out)
        return
    if args.nodes < 1 or args.rounds < 2 or args.repeats < 1 or args.local_epochs < 1:
        raise SystemExit("--nodes, --repeats and --local-epochs must be >= 1, --rounds >= 2")
    args.variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if unknown := set(args.variants) - set(VARIANTS):
        raise SystemExit(f"--variants: unknown {sorted(unknown)} (expected some of {', '.join(VARIANTS)})")
    # Every process (flchain's commands, SuperLinks, SuperNodes, app processes) imports this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    alone = root_alone(args.local_epochs)
    console.print(
        f"root training alone: {alone['wall_default']:.3f} s wall, {alone['cpu_default']:.3f} s CPU "
        f"({alone['threads']:.0f} torch threads); one thread {alone['wall_one']:.3f} s, "
        f"{alone['cpu_one']:.3f} s"
    )
    if args.work is not None:
        args.work.mkdir(parents=True)  # a new directory: runs never mix with an earlier bench's files
        runs = measure(args, args.work.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="flchain-server-path-") as tmp:
            runs = measure(args, Path(tmp))
    write_report(args.out, args, Results(runs, alone))


if __name__ == "__main__":
    main()
