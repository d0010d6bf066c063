"""The dashboard measured in headless Chromium: first paint with a 100-round x 10-node ledger, and how
long a new block takes to show on an open page. Also takes the README's screenshot of a real run.

Part 1 (screenshot): a real federated demo (8 nodes, 6 rounds, 2 validators) on anvil with the
dashboard beside it; the page after the run, one blob verified, is saved as docs/dashboard.png.
Part 2 (timings): a fresh chain with 10 registered nodes and 100 committed rounds (real blobs, every
node scored each round); the dashboard's start-up read, the /api/ledger answer, first paint over
several page loads, and the delay from a commit's receipt to its row on an open page.
Writes docs/dashboard.md and docs/dashboard.json. Usage: .venv/bin/python bench/dashboard.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from fl_chain.chain.setup import bootstrap  # noqa: E402
from fl_chain.chain.setup.localnode import free_port  # noqa: E402
from fl_chain.coordinator.committer import RoundCommitter  # noqa: E402
from fl_chain.dashboard.serve import DashboardServer  # noqa: E402
from fl_chain.store import ModelStore  # noqa: E402
from tests.browser import chromium, wait_for  # noqa: E402

DOCS = ROOT / "docs"


def _row_count(driver) -> int:
    return int(driver.execute_script("return document.querySelectorAll('#rounds-table tbody tr').length"))


def screenshot(work: Path) -> None:
    """A real run with validators, the page after it, one blob verified: docs/dashboard.png."""
    from fl_chain.config import RunConfig
    from fl_chain.demo import run_demo

    home = work / "demo"
    home.mkdir()
    local = bootstrap.start_local(home)
    board = None
    try:
        board = DashboardServer(local.client, port=free_port(), home=home).start()
        config = RunConfig()
        config.federation.rounds = 6
        print("screenshot: demo with 8 nodes, 6 rounds, 2 validators ...", flush=True)
        run_demo(config, 8, home, local=local, plot=False, validators=2)
        with chromium(work, 1400, 1300) as driver:
            driver.get(board.url)
            wait_for(lambda: _row_count(driver) == 7, 30, "7 rounds on the page")
            driver.execute_script("document.querySelector('#rounds-table tbody tr button.verify').click()")
            wait_for(
                lambda: driver.execute_script("return document.querySelector('.verify-result.match')"),
                30,
                "a verified blob",
            )
            time.sleep(0.5)
            driver.save_screenshot(str(DOCS / "dashboard.png"))
        print(f"screenshot: {DOCS / 'dashboard.png'}", flush=True)
    finally:
        if board is not None:
            board.stop()
        local.stop()


def timings(work: Path, rounds: int, nodes: int, loads: int, live: int) -> dict:
    """First paint and live delay with `rounds` x `nodes` on the ledger."""
    home = work / "scale"
    home.mkdir()
    local = bootstrap.start_local(home)
    board = None
    try:
        client = local.client
        addresses = [n.address for n in bootstrap.register_nodes(client, nodes)]
        store = ModelStore(home / "store")
        committer = RoundCommitter.new_task(client, local.coordinator, store, b"\x03" * 32)
        rng = np.random.default_rng(0)
        print(f"timings: committing {rounds} rounds x {nodes} nodes ...", flush=True)
        for n in range(rounds):
            scores = {a: int(rng.integers(500_000, 1_000_000)) for a in addresses} if n else {}
            committer.commit(n, {"w": rng.standard_normal(256).astype(np.float32)}, scores)
        started = time.monotonic()
        board = DashboardServer(client, port=free_port()).start()
        startup = time.monotonic() - started
        answer_times, size = [], 0
        for _ in range(5):
            t = time.monotonic()
            body = requests.get(board.url + "api/ledger", timeout=30).content
            answer_times.append(time.monotonic() - t)
            size = len(body)
        paints = []
        live_delays = []
        with chromium(work) as driver:
            for _ in range(loads):
                driver.get(board.url)
                paint = wait_for(
                    lambda: driver.execute_script("return document.body.dataset.firstPaintMs"),
                    30,
                    "first paint",
                )
                paints.append(int(paint))
            wait_for(lambda: _row_count(driver) == rounds, 30, "every round on the page")
            for n in range(rounds, rounds + live):
                commit = committer.commit(n, {"w": rng.standard_normal(256).astype(np.float32)}, {})
                mined = time.monotonic()  # the receipt is in: the block exists
                wait_for(lambda n=n: _row_count(driver) == n + 1, 30, f"round {n}", interval=0.01)
                live_delays.append(time.monotonic() - mined)
                assert commit.gas > 0
        return {
            "rounds": rounds,
            "nodes": nodes,
            "startup_read_s": round(startup, 3),
            "api_ledger_bytes": size,
            "api_ledger_median_s": round(statistics.median(answer_times), 4),
            "first_paint_ms": {"median": statistics.median(paints), "max": max(paints), "loads": loads},
            "live_delay_s": {
                "median": round(statistics.median(live_delays), 3),
                "max": round(max(live_delays), 3),
                "commits": live,
            },
        }
    finally:
        if board is not None:
            board.stop()
        local.stop()


def write(result: dict) -> None:
    """docs/dashboard.json and a table in docs/dashboard.md."""
    (DOCS / "dashboard.json").write_text(json.dumps(result, indent=2) + "\n")
    paint, live = result["first_paint_ms"], result["live_delay_s"]
    rows = [
        ("ledger", f"{result['rounds']} rounds x {result['nodes']} nodes (every node scored each round)"),
        ("dashboard start-up (reads every event once)", f"{result['startup_read_s']:.2f} s"),
        (
            "/api/ledger answer",
            f"{result['api_ledger_bytes'] / 1024:.0f} KiB in {result['api_ledger_median_s']:.3f} s",
        ),
        (
            "first paint, navigation to tables and charts drawn",
            f"median {paint['median']} ms, max {paint['max']} ms over {paint['loads']} loads",
        ),
        (
            "new commit's receipt to its row on the open page",
            f"median {live['median']:.2f} s, max {live['max']:.2f} s over {live['commits']} commits",
        ),
    ]
    text = [
        "# Dashboard: first paint and live delay",
        "",
        "Measured by `bench/dashboard.py` in headless Chromium (Debian package) on this 2-core machine,",
        "against anvil, with the dashboard in the bench's process. Not part of `make test`.",
        "",
        "| what | measured |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "The page reads the chain only through the dashboard's event poll (every 0.25 s) and its",
        "server-sent event stream (checked every 0.1 s); each announcement makes the page fetch the whole",
        "picture again, which at this size is one small JSON answer.",
        "",
    ]
    (DOCS / "dashboard.md").write_text("\n".join(text))
    print("\n".join(text))


def main() -> None:
    """Screenshot, timings, docs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--live", type=int, default=10)
    parser.add_argument("--no-screenshot", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_screenshot:
            screenshot(Path(tmp))
        write(timings(Path(tmp), args.rounds, args.nodes, args.loads, args.live))


if __name__ == "__main__":
    main()
