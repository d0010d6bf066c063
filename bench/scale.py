"""How `flchain demo` scales with the number of registered nodes on this machine: the demo (digits MLP,
the default config's local epochs, FedAvg, IID) at 10 / 100 / 1,000 registered nodes with about 10 % of
them sampled per round (at least 2), on Flower's Simulation Engine, one run at a time, in per-participant
mode (`ledger.mode = "plain"`) and in commitment mode (`ledger.mode = "commitment"`).

Measured per run:
- registration: funding, registering and approving every node key (bootstrap.register_nodes, batched);
- per-round time: between consecutive round reports (a round = handshake of newly sampled nodes,
  training, screening, scoring, store, commit); round 1 apart (its nodes are all new to the gate);
- RPC calls per round: JSON-RPC calls that reach anvil through a counting TCP proxy (tests/rpc_proxy.py)
  in front of it, from the server and every simulated node (the deployment file the run reads names
  the proxy; registration goes around it); each call of a batch request counts;
- peak memory: the largest sum of resident set sizes of this process and all its descendants (anvil,
  Ray's processes and workers), sampled 4 times a second over the run.

Usage: .venv/bin/python bench/scale.py [--nodes 10,100,1000] [--fraction 0.1] [--rounds 3]
       [--modes plain,commitment]
Prints a table and writes docs/scale.json and the "## Measured on this machine" section of
docs/scale.md (the rest of that file is left as it is). The 1,000-node run takes several minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fl_chain.chain.deployment import DEPLOYMENT_FILE  # noqa: E402
from fl_chain.chain.setup import bootstrap  # noqa: E402
from fl_chain.cli_demo import _quiet_simulation  # noqa: E402
from fl_chain.config import load_config  # noqa: E402
from fl_chain.demo import run_demo  # noqa: E402
from fl_chain.wire.report import RoundReport, RunEntry  # noqa: E402
from tests.rpc_proxy import RpcProxy  # noqa: E402

console = Console()
HEADING = "## Measured on this machine"


class PeakRss:
    """Samples the resident set size of this process and its descendants; keeps the largest sum."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> PeakRss:
        """Start sampling in a thread."""
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak

    def _loop(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:  # ended between listing and reading
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)


def one_run(nodes: int, fraction: float, rounds: int, mode: str = "plain") -> dict:
    """One demo run with `nodes` registered nodes in ledger mode `mode`; its measurements."""
    home = Path(tempfile.mkdtemp(prefix=f"flchain-scale-{nodes}-"))
    config = load_config(None)
    config.federation.rounds = rounds
    config.federation.fraction_train = fraction
    config.ledger.mode = mode
    rss = PeakRss().start()
    started = time.monotonic()
    local = bootstrap.start_local(home, "anvil")
    proxy = RpcProxy(int(local.process.rpc_url.rsplit(":", 1)[1]))
    # The run's server and simulated nodes read the deployment file: it names the counting proxy.
    local.client.deployment.rpc_url = proxy.url
    local.client.deployment.save(home / DEPLOYMENT_FILE)
    marks: list[tuple[float, int, RoundReport]] = []
    registered: list[float] = []

    def on_entry(entry: RunEntry) -> None:
        if isinstance(entry, RoundReport):
            marks.append((time.monotonic(), proxy.calls, entry))

    def progress(done: int, total: int) -> None:
        if done == total:
            registered.append(time.monotonic())
        console.print(f"  registered {done}/{total} nodes ({time.monotonic() - t0:.1f} s)")

    try:
        t0 = time.monotonic()
        result = run_demo(config, nodes, home, on_entry=on_entry, plot=False, local=local, progress=progress)
    finally:
        local.stop()
        proxy.close()
        peak = rss.stop()
    total_s = time.monotonic() - started
    shutil.rmtree(home, ignore_errors=True)
    per_round = [
        {
            "round": report.round,
            "seconds": round(t - t_prev, 3),
            "rpc_calls": calls - calls_prev,
            "sampled": len(report.participants) + len(report.missed),
            "accuracy": report.accuracy,
        }
        for (t_prev, calls_prev, _), (t, calls, report) in itertools.pairwise(marks)
    ]
    if len(result.reports) != rounds + 1:
        raise SystemExit(f"{nodes} nodes: {len(result.reports)} of {rounds + 1} rounds committed")
    later = per_round[1:] or per_round
    return {
        "nodes": nodes,
        "mode": mode,
        "gas_per_round_median_later": statistics.median(
            r.gas for r in result.reports[2:] or result.reports[1:]
        ),
        "final_accuracy": result.reports[-1].accuracy,
        "fraction": fraction,
        "rounds": rounds,
        "registration_s": round((registered[-1] if registered else t0) - t0, 2),
        "round1_s": per_round[0]["seconds"],
        "round_s_median_later": round(statistics.median(r["seconds"] for r in later), 3),
        "rpc_round1": per_round[0]["rpc_calls"],
        "rpc_per_round_median_later": statistics.median(r["rpc_calls"] for r in later),
        "sampled_per_round": statistics.median(r["sampled"] for r in per_round),
        "peak_rss_mb": round(peak / 2**20),
        "total_s": round(total_s, 1),
        "per_round": per_round,
    }


def write_docs(runs: list[dict], args: argparse.Namespace) -> Table:
    """docs/scale.json, the measured section of docs/scale.md; returns the table printed."""
    table = Table(
        title=f"flchain demo at scale ({args.rounds} rounds, ~{args.fraction:.0%} sampled per round)"
    )
    header = (
        "registered nodes",
        "mode",
        "sampled / round",
        "registration (s)",
        "round 1 (s)",
        "later rounds (s, median)",
        "RPC calls round 1",
        "RPC calls / later round (median)",
        "peak RSS (MB)",
        "commit gas / round",
        "accuracy after the last round",
    )
    for col in header:
        table.add_column(col, justify="right")
    lines = [HEADING, "", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for r in runs:
        row = (
            f"{r['nodes']:,}",
            r["mode"],
            f"{r['sampled_per_round']:g}",
            f"{r['registration_s']:.1f}",
            f"{r['round1_s']:.1f}",
            f"{r['round_s_median_later']:.1f}",
            f"{r['rpc_round1']:,}",
            f"{r['rpc_per_round_median_later']:,.0f}",
            f"{r['peak_rss_mb']:,}",
            f"{r['gas_per_round_median_later']:,.0f}",
            f"{100 * r['final_accuracy']:.1f} %",
        )
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"`bench/scale.py --nodes {','.join(str(n) for n in args.nodes)} --fraction {args.fraction} "
        f"--rounds {args.rounds} --modes {','.join(args.modes)}`, {datetime.now():%Y-%m-%d}, "
        f"{psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GB RAM, Python {platform.python_version()}. "
        "Later rounds: rounds 2 onwards (round 1 also challenges every sampled node, all new to the gate). "
        "RPC calls: every JSON-RPC call reaching anvil from the server and the simulated nodes "
        "(registration not included). Peak RSS: this process and all its descendants (anvil, Ray).",
        "",
    ]
    (ROOT / "docs" / "scale.json").write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    path = ROOT / "docs" / "scale.md"
    old = path.read_text() if path.exists() else ""
    if HEADING in old:  # replace only the measured section (up to the next level-2 heading)
        before, rest = old.split(HEADING, 1)
        following = rest.find("\n## ")
        after = rest[following:].lstrip("\n") if following >= 0 else ""
        text = before + "\n".join(lines) + ("\n" + after if after else "")
    else:
        intro = (
            "# Scale\n\n"
            "How `flchain demo` behaves as the number of registered nodes grows, measured by "
            "`bench/scale.py`: the demo (digits MLP, default local epochs, FedAvg, IID partitions) on "
            "Flower's Simulation Engine with anvil, at 10, 100 and 1,000 registered nodes with about "
            "10 % of them "
            "(at least 2) sampled per round, one run at a time on this 2-core machine. Per-round time is "
            "the time between consecutive round reports; RPC calls are counted by a TCP proxy in front "
            "of anvil (tests/rpc_proxy.py) that the run's deployment file names, so the server's and "
            "every simulated node's calls count; peak memory is the largest sum of resident set sizes "
            "of the process tree (the bench, anvil and Ray).\n\n"
        )
        text = (old.rstrip("\n") + "\n\n" if old else intro) + "\n".join(lines)
    path.write_text(text)
    return table


def main() -> None:
    """Run the scale measurements and write the docs."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100, 1000])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["plain", "commitment"])
    args = parser.parse_args()
    if not set(args.modes) <= {"plain", "commitment"}:
        raise SystemExit("expected --modes of plain and/or commitment")
    if not 0 < args.fraction <= 1 or args.rounds < 2 or min(args.nodes) < 2 or max(args.nodes) > 1000:
        raise SystemExit("expected --fraction in (0, 1], --rounds >= 2, --nodes each in 2..1000")
    _quiet_simulation()
    runs = []
    for n, mode in itertools.product(args.nodes, args.modes):
        console.print(f"{n} registered nodes, fraction {args.fraction}, {args.rounds} rounds, {mode} mode")
        runs.append(one_run(n, args.fraction, args.rounds, mode))
        console.print(f"  done in {runs[-1]['total_s']:.0f} s")
    console.print(write_docs(runs, args))


if __name__ == "__main__":
    main()
