"""What flchain costs on top of plain Flower at real model sizes: the same Flower App (bench/apps/widemlp,
an MLP of 1M, 10M or 100M parameters on synthetic data, one SGD step per round, so a round's cost is the
model's size) with and without its flchain lines, paired as in bench/overhead.py (which this reuses:
plain variant, processes, CPU and memory sampling, round timestamps), on the Deployment Engine and the
Simulation Engine, with flchain's ledger in plain and in verified mode.

Per steady round (rounds 2..N): wall and CPU seconds of every process of the run, the run's peak
resident memory, the bytes flchain wrote to its store per round (model blob + verified mode's update
blobs and manifest) and the coordinator's time split from its round reports (screening, of which
hashing the updates; the model's hash; the store write; the commit transaction; finality wait).

Engines: `deployment` (flchain's nodes are plain `flower-supernode`s given the keystore and its password),
`deployment-client` (they are `flchain client`s, the recommended deployment: the key is decrypted once),
`simulation`.

Usage: .venv/bin/python bench/model_size.py [--sizes 1M,10M,100M] [--engines deployment,simulation]
       [--modes plain,verified] [--rounds 3] [--big-rounds 2] [--repeats 1] [--out docs/model-size]
       [--merge]   (keep the earlier runs of the sizes and engines not measured now)
       [--report]  (rewrite OUT.md from OUT.json's runs, run nothing)
The machine is shared: the 100M case runs `--big-rounds` rounds on the Deployment Engine only
(`--big-engines`). Takes ~20 min with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import overhead  # noqa: E402

from fl_chain.config import RunConfig  # noqa: E402
from fl_chain.wire.report import read_reports  # noqa: E402
from fl_chain.wire.run_spec import RUN_CONFIG_KEY as RUN_SPEC_KEY  # noqa: E402
from fl_chain.wire.run_spec import RunSpec  # noqa: E402

APP = ROOT / "bench" / "apps" / "widemlp"
SIZES = {"1M": 1_000_000, "10M": 10_000_000, "100M": 100_000_000}
SPLIT = ("train", "screen", "hash", "score", "model_hash", "store", "commit", "finalize")
CPU_SPLIT = ("hash_cpu", "model_hash_cpu")  # the hashes' CPU seconds (runs before these were recorded: none)
TARGETS = {  # issue 28: wall ratio per (engine, mode); the 100M plain deployment also CPU and RSS
    ("deployment", "plain"): 1.10,
    ("deployment", "verified"): 1.20,
    ("deployment-client", "plain"): 1.10,
    ("deployment-client", "verified"): 1.20,
    ("simulation", "plain"): 1.10,
    ("simulation", "verified"): 1.20,
}
console = Console()


@dataclass
class Measured:
    """One run: overhead.py's per-round figures, plus flchain's store bytes and time split per round."""

    size: str
    mode: str  # "flower" for the plain Flower variant
    run: overhead.RunResult
    store_bytes: list[int] = field(default_factory=list)
    split: dict[str, list[float]] = field(default_factory=dict)


def _spec(setup: overhead.Setup, run_dir: Path, mode: str) -> Path:
    """A RunSpec file: the deployment, a fresh store and events file for this run, the ledger mode."""
    config = RunConfig()
    config.chain.deployment = str(setup.deployment)
    config.store.dir = str(run_dir / "store")
    config.ledger.mode = mode
    config.scoring.method = "cosine"  # the same scorer in both modes (verified mode re-derives it)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    RunSpec(config, run_dir, run_dir / "events.jsonl").write(path)
    return path


def one_run(setup: overhead.Setup, engine: str, size: str, mode: str, repeat: int, nodes: int) -> Measured:
    """One run of one variant; `mode` "flower" is the app without its flchain lines."""
    tag = f"{size}-{mode}"
    variant = "plain" if mode == "flower" else "flchain"
    run_dir = setup.work / f"{engine}-{variant}-{tag}-{repeat}"
    base = dict(setup.run_config)
    if variant == "flchain":
        setup.run_config = base | {RUN_SPEC_KEY: str(_spec(setup, run_dir, mode))}
    try:
        if engine == "simulation":
            result = overhead.simulation_run(setup, variant, f"{tag}-{repeat}", nodes)
        else:  # flchain's nodes: plain supernodes given the key, or `flchain client`s (deployment-client)
            by_client = engine == "deployment-client"
            result = overhead.deployment_run(setup, variant, f"{tag}-{repeat}", nodes, by_client)
    finally:
        setup.run_config = base
    measured = Measured(size, mode, result)
    if variant == "flchain":
        reports = read_reports(run_dir / "events.jsonl")[1:]  # round 0 is the initial model
        store = run_dir / "store"
        for report in reports:
            blob = store / report.model_hash.removeprefix("0x")
            measured.store_bytes.append(blob.stat().st_size + report.published_bytes)
        measured.split = {k: [r.seconds.get(k, 0.0) for r in reports] for k in SPLIT}
        for k in CPU_SPLIT:
            if any(k in r.seconds for r in reports):
                measured.split[k] = [r.seconds.get(k, 0.0) for r in reports]
    return measured


def _steady(values: list[float]) -> float:
    return statistics.median(values[1:] or values) if values else 0.0


def summarize(runs: list[Measured]) -> list[dict]:
    """Per (engine, size, mode): medians of the flchain and plain Flower runs and of their paired ratios."""
    rows = []
    keys = sorted({(m.run.engine, m.size, m.mode) for m in runs if m.mode != "flower"})
    for engine, size, mode in keys:
        pairs = []
        for f in runs:
            if (f.run.engine, f.size, f.mode) != (engine, size, mode):
                continue
            repeat = str(f.run.repeat).rsplit("-", 1)[-1]
            p = [m for m in runs if (m.run.engine, m.size, m.mode) == (engine, size, "flower")]
            p = [m for m in p if str(m.run.repeat).rsplit("-", 1)[-1] == repeat]
            if p:
                pairs.append((p[0], f))
        if not pairs:
            continue
        row: dict = {"engine": engine, "size": size, "mode": mode, "pairs": len(pairs)}
        for metric, get in (("wall", lambda m: m.run.wall), ("cpu", lambda m: m.run.cpu)):
            row[f"{metric}_flower"] = statistics.median(get(p) for p, _ in pairs)
            row[f"{metric}_flchain"] = statistics.median(get(f) for _, f in pairs)
            row[f"{metric}_ratio"] = statistics.median(get(f) / get(p) for p, f in pairs)
        row["rss_flower"] = statistics.median(p.run.peak_rss_mb for p, _ in pairs)
        row["rss_flchain"] = statistics.median(f.run.peak_rss_mb for _, f in pairs)
        row["rss_ratio"] = statistics.median(f.run.peak_rss_mb / p.run.peak_rss_mb for p, f in pairs)
        row["store_mb"] = statistics.median(_steady([b / 1e6 for b in f.store_bytes]) for _, f in pairs)
        for k in SPLIT:
            row[k] = statistics.median(_steady(f.split.get(k, [])) for _, f in pairs)
        row["hash_share"] = (row["hash"] + row["model_hash"]) / row["wall_flchain"]
        row["hash_cpu_share"] = None
        needed = CPU_SPLIT if mode == "plain" else ("hash_cpu",)  # verified mode hashes the model in line
        if all(k in f.split for _, f in pairs for k in needed):
            cpu = sum(statistics.median(_steady(f.split.get(k, [])) for _, f in pairs) for k in CPU_SPLIT)
            row["hash_cpu_share"] = cpu / row["wall_flchain"]
        row["target"] = TARGETS[(engine, mode)]
        rows.append(row)
    return rows


def write_report(
    out: Path, args: argparse.Namespace, runs: list[Measured], rows: list[dict], write_json: bool = True
) -> None:
    """OUT.json with every run (unless `write_json` is false: the page rewritten from it), OUT.md with the
    tables; the main table printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if write_json:
        saved = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "runs": [{**asdict(m), "run": asdict(m.run)} for m in runs],
            "summary": rows,
        }
        out.with_suffix(".json").write_text(json.dumps(saved, indent=1))
    lines = [
        "# flchain's overhead at real model sizes",
        "",
        f"Measured by `bench/model_size.py` on {os.cpu_count()} shared cores: the Flower App "
        "`bench/apps/widemlp` (an MLP 32 → H → H → 10 sized to 1M, 10M or 100M float32 parameters, 4 MB, "
        "40 MB, 400 MB per message; one SGD step on a synthetic batch per round, so the round's cost is the "
        f"model's size) with and without its flchain lines, {args.nodes} nodes, {_counts(runs, False)} "
        f"rounds ({_counts(runs, True)} at 100M), {_repeats(runs)} paired repeat(s), flchain's ledger in "
        "plain and in "
        "verified mode. Per steady round (rounds 2..N, from the ServerApp's log timestamps): wall and CPU "
        "seconds of every process the run used (flchain's include the chain node), the run's peak resident "
        "memory summed over those processes, and the bytes flchain wrote to its store per round. Ratios are "
        "medians of the paired ratios (flchain / plain Flower). On `deployment` flchain's nodes are "
        "plain `flower-supernode`s given the keystore and its password: each message's app process decrypts "
        "the key (scrypt: 0.7 s of CPU and 256 MB per message here (docs/signing.md), most of the 1M "
        "rows' extra CPU and memory); on `deployment-client` they are `flchain client`s, the recommended "
        "deployment, which decrypt it once (the plain Flower variant runs plain supernodes in both).",
        "",
        "| engine | size | ledger | wall Flower s | wall flchain s | wall ratio | target | CPU ratio "
        "| peak RSS Flower MB | peak RSS flchain MB | RSS ratio | store MB/round |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table = Table(title="flchain / plain Flower per steady round, by model size")
    for col in ("engine", "size", "ledger", "wall Flower", "wall flchain", "ratio", "target", "CPU", "RSS"):
        table.add_column(col, justify="right")
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['size']} | {r['mode']} | {r['wall_flower']:.2f} | {r['wall_flchain']:.2f} "
            f"| {r['wall_ratio']:.3f} | ≤ {r['target']:.2f} | {r['cpu_ratio']:.3f} | {r['rss_flower']:.0f} "
            f"| {r['rss_flchain']:.0f} | {r['rss_ratio']:.3f} | {r['store_mb']:.0f} |"
        )
        table.add_row(
            r["engine"],
            r["size"],
            r["mode"],
            f"{r['wall_flower']:.2f}",
            f"{r['wall_flchain']:.2f}",
            f"{r['wall_ratio']:.3f}",
            f"≤ {r['target']:.2f}",
            f"{r['cpu_ratio']:.3f}",
            f"{r['rss_ratio']:.3f}",
        )
    lines += [
        "",
        "## The coordinator's time per round (seconds, flchain runs, from its round reports)",
        "",
        "train: from sending the round to its last reply (the nodes' work, flchain's included: the "
        "received model's hash and chain check, the update's hash and signature); "
        "screen: checking and signature-checking the replies once the last is in (each reply's checks "
        "and hash start as it arrives, `coordinator/early_checks.py`); hash: the seconds during which some "
        "update was being hashed (background threads, mostly while other nodes still train) and, in "
        "verified mode, the aggregate; score: the round's scores (cosine with the "
        "coordinate-wise median update; in plain mode in the overlapped commit's job, off the critical path; "
        "in verified mode beside the wrapped strategy's aggregation); model_hash: the "
        "aggregate's hash in plain mode; store: writing the model (and verified mode's updates and "
        "manifest), streamed and fsynced; commit: the transaction to its receipt; finalize: waiting for the "
        "validators (not configured here). hash share: all hashing over the round's wall time, as the "
        "seconds during which some hash ran (a span also counts the time a hashing thread waited for a core "
        "the nodes or the other checks held) and as the hashing threads' CPU seconds (recorded since "
        "these runs: n/a for earlier ones).",
        "",
        "| engine | size | ledger | train | screen | hash | score | model_hash | store | commit | finalize "
        "| hash share, spans | hash share, CPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        split = " | ".join(f"{r[k]:.3f}" for k in SPLIT)
        cpu = "n/a" if r.get("hash_cpu_share") is None else f"{r['hash_cpu_share']:.1%}"
        shares = f"{r['hash_share']:.1%} | {cpu}"
        lines.append(f"| {r['engine']} | {r['size']} | {r['mode']} | {split} | {shares} |")
    lines += [
        "",
        "## What flchain does per byte, and where it sits",
        "",
        "- Every blob is hashed once per process, without a serialised copy: `protocol/model_bytes.py` "
        "builds safetensors' header itself (held byte for byte to safetensors' output by "
        "tests/test_store.py) and feeds SHA-256 each array's own buffer; the store streams the same "
        "parts to disk. The hash is SHA-256 of the safetensors bytes (keccak-256 before: 4x slower here, "
        "docs/rounds.md says why it changed): `sha256sum` re-hashes a blob. `bench/hash_speed.py` "
        "(docs/hashing.md) measures it against the old path.",
        "- Coordinator: each reply is checked and its update hashed in background threads the moment "
        "the round's grid pulls it (`coordinator/early_checks.py`; the hash beside the finiteness and "
        "distance pass), while the other nodes still train, so only the last reply's checks and hash "
        "remain once the replies are in (hashlib and numpy release the GIL); a plain round's scores are "
        "computed in its overlapped commit's job while the next round trains (a verified round's beside "
        "the wrapped strategy's aggregation: its manifest names them), and an app's evaluate_fn gets "
        "the ArrayRecord the round sends on (no second serialisation); that one hash "
        "serves the signature check, the manifest entry and the stored update blob "
        "(verified mode writes each update once, streamed from the arrays as received). The aggregate is "
        "read as views of the wrapped strategy's ArrayRecord and, when the model is exactly it, that "
        "record goes to the next round as it is (no second serialisation); it is hashed once, for the "
        "manifest and the store.",
        "- Scores, the outlier check and each reply's finiteness and size check read the updates block by "
        "block (`defence/gram.py`: 256k parameters at a time into one reused buffer, every dot product "
        "of the round from one matrix product per block, the coordinate-wise median by a min/max sorting "
        "network, of three updates by four min/max passes), not as whole float64 copies: at 100M "
        "parameters and 3 updates the copies were 2.4 GB "
        "of fresh memory per round and scoring took 44.6 s of it; now about 1 s.",
        "- Node: the received model is hashed while the app trains and checked against the parent round "
        "before the reply; the reply's arrays are read as views of Flower's own message bytes (no copy) "
        "for the architecture check and the signature's hash.",
        "- The ledger overlaps training: round r's commit (store, transaction, receipt, report) runs while "
        "round r+1 is sampled and trained (`coordinator/commit_pipeline.py`); nodes wait for the parent "
        "round after training if it has not landed yet. Its cost shows in the rows above only when it is "
        "longer than a round's training.",
        *_simulation_floor(rows, args.nodes),
    ]
    lines += ["", "Every run (wall and CPU seconds per round, rounds 1..N):", ""]
    lines += [
        "| engine | size | ledger | repeat | wall per round | CPU per round | peak RSS MB | run s |",
        "|---|---|---|---|---|---|---:|---:|",
    ]
    for m in runs:
        r = m.run
        lines.append(f"| {r.engine} | {m.size} | {m.mode} | {r.repeat} | {overhead.run_cells(r)} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print(table)
    console.print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


def _counts(runs: list[Measured], big: bool) -> str:
    """The rounds per run of the runs at 100M (`big`) or below, as the page states them (runs merged from
    several invocations may differ)."""
    counts = sorted({len(m.run.round_wall) for m in runs if (m.size == "100M") == big})
    return "/".join(str(c) for c in counts) or "0"


def _repeats(runs: list[Measured]) -> str:
    """How many paired repeats each (engine, size, ledger) had, as the page states them."""
    per = Counter((m.run.engine, m.size, m.mode) for m in runs)
    return "/".join(str(c) for c in sorted(set(per.values()))) or "0"


def _sha256_mb_per_s() -> float | None:
    """SHA-256's speed on this machine, MB/s, as bench/hash_speed.py measured it (docs/hashing.json)."""
    path = ROOT / "docs" / "hashing.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    row = next((r for r in saved["rows"] if r["case"].startswith("sha256 of the blob")), None)
    return float(saved["args"]["mb"]) / row["seconds"] if row else None


def _simulation_floor(rows: list[dict], nodes: int) -> list[str]:
    """Where a simulated round's extra time goes, from the plain-ledger simulation rows: the part spent
    before the last reply is in (the nodes' work) and the coordinator's after it, and what of it lies on
    the round's critical path whatever the scheduling (docs/hashing.md's SHA-256 speed)."""
    lines = []
    speed = _sha256_mb_per_s()
    in_turn = math.ceil(nodes / (os.cpu_count() or 1))  # nodes one Ray actor runs one after the other
    for r in rows:
        if r["engine"] != "simulation" or r["mode"] != "plain" or not r.get("train"):
            continue
        extra = r["wall_flchain"] - r["wall_flower"]
        allowed = 0.1 * r["wall_flower"]
        verdict = ""
        if speed is not None:
            node_hash = r["store_mb"] / speed
            floor = in_turn * node_hash + r["screen"]
            verdict = (
                " On the critical path whatever the scheduling: each node's hash of its update (after "
                f"training, before the reply: {node_hash:.3f} s at docs/hashing.md's {speed:.0f} MB/s; "
                f"one actor runs {in_turn} of the {nodes} nodes one after the other) and the coordinator's "
                f"checks of the last reply ({r['screen']:.3f} s): {floor:.3f} s, against the "
                f"{allowed:.3f} s a 10 % target leaves."
            )
        lines.append(
            f"- Simulation Engine, {r['size']}, plain ledger: a plain Flower round takes "
            f"{r['wall_flower']:.2f} s, flchain's {r['wall_flchain']:.2f} s (+{extra:.2f} s), of which "
            f"{r['train']:.2f} s until the last reply (the nodes' training with flchain's checks: the "
            "received model's hash and parent check, the update's hash and signature) and "
            f"{r['wall_flchain'] - r['train']:.2f} s after it (checks of the last reply, the "
            f"aggregation, the next round's configuration).{verdict} Ray's node actors and the ServerApp "
            f"share {os.cpu_count()} cores (CPU ratio {r['cpu_ratio']:.2f}); on the Deployment Engine, "
            "where a round is seconds long, most of this work overlaps the nodes' training."
        )
    return lines


def _plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(engine, size) pairs to run, the biggest size only on `--big-engines`."""
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if unknown := set(sizes) - set(SIZES):
        raise SystemExit(f"--sizes: unknown {sorted(unknown)} (expected {', '.join(SIZES)})")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    big = {e.strip() for e in args.big_engines.split(",")}
    return [(e, s) for s in sizes for e in engines if s != "100M" or e in big]


def main() -> None:
    """Measure every (engine, size) with plain Flower and flchain's ledger modes, and report."""
    signal.signal(signal.SIGTERM, overhead._interrupted)  # so every process started is stopped
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M,100M")
    parser.add_argument("--engines", default="deployment,simulation")
    parser.add_argument("--big-engines", default="deployment")
    parser.add_argument("--modes", default="plain,verified")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "model-size")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep OUT.json's runs of the (engine, size) pairs not measured now",
    )
    parser.add_argument("--report", action="store_true", help="rewrite OUT.md from OUT.json; run nothing")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        for key in ("nodes", "rounds", "big_rounds", "repeats"):  # the figures the page states are the runs'
            setattr(args, key, int(saved["args"][key]))
        runs = _earlier_runs(args.out, set())
        write_report(args.out, args, runs, summarize(runs), write_json=False)
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    runs: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="flchain-model-size-") as tmp:
        setup, local, _ = overhead.prepare(Path(tmp), APP, args.nodes)
        overhead.declare_run_config(setup.apps["flchain"] / "pyproject.toml", (RUN_SPEC_KEY,))
        try:
            for engine, size in _plan(args):
                rounds = args.big_rounds if size == "100M" else args.rounds
                setup.run_config = {
                    "num-server-rounds": rounds,
                    "params": SIZES[size],
                    "min-nodes": args.nodes,
                }
                for repeat in range(args.repeats):
                    order = ["flower", *modes] if repeat % 2 == 0 else [*modes, "flower"]
                    for mode in order:
                        console.print(f"{engine} {size} {mode} run {repeat + 1}/{args.repeats} ...")
                        m = one_run(setup, engine, size, mode, repeat, args.nodes)
                        console.print(
                            f"  round wall {m.run.wall:.2f} s, CPU {m.run.cpu:.2f} s, "
                            f"peak RSS {m.run.peak_rss_mb:.0f} MB"
                        )
                        runs.append(m)
        finally:
            local.stop()
    if args.merge:
        runs = [*_earlier_runs(args.out, {(m.run.engine, m.size) for m in runs}), *runs]
    write_report(args.out, args, runs, summarize(runs))


def _earlier_runs(out: Path, measured: set[tuple[str, str]]) -> list[Measured]:
    """OUT.json's runs except those of the (engine, size) pairs in `measured` (re-measured now)."""
    path = out.with_suffix(".json")
    if not path.exists():
        return []
    kept = []
    for r in json.loads(path.read_text())["runs"]:
        run = overhead.RunResult(**r["run"])
        if (run.engine, r["size"]) not in measured:
            kept.append(Measured(r["size"], r["mode"], run, r["store_bytes"], r["split"]))
    return kept


if __name__ == "__main__":
    main()
