"""What verified rounds cost, side by side with plain rounds in one run: the same demo (Simulation Engine,
anvil, two validators that attest every round and nodes that train only from finalized models) once with
`ledger.mode = "plain"` and once with `"verified"`, alternating, REPEATS times each.

Per round: time from the end of training to a finalized commit (store + commit + finalize), the commit's gas,
the bytes a verified round publishes beside the model (update blobs for the validators, a public
manifest), and each validator's re-derivation time. Prints a table and writes docs/verified-rounds.md and
docs/verified-rounds.json.
Usage: .venv/bin/python bench/verified.py [--clients 5] [--rounds 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fl_chain.config import RunConfig  # noqa: E402
from fl_chain.demo import run_demo  # noqa: E402
from fl_chain.verify.validator import Attestation  # noqa: E402


def one_run(mode: str, clients: int, rounds: int) -> dict:
    """One demo run; the per-round figures of rounds >= 1."""
    config = RunConfig()
    config.federation.rounds = rounds
    config.task.local_epochs = 1
    config.ledger.mode = mode
    config.scoring.method = "cosine"  # re-derived exactly in verified mode; same scorer in both modes
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(config, clients, Path(tmp) / "demo", plot=False, validators=2)
        model_bytes = max(p.stat().st_size for p in (Path(tmp) / "demo" / "store").iterdir() if p.is_file())
    reports = result.reports[1:]
    verdicts = [v for v in result.extra["attestations"] if isinstance(v, Attestation) and v.round > 0]
    return {
        "mode": mode,
        "after_training_s": [
            sum(r.seconds.get(k, 0.0) for k in ("store", "commit", "finalize")) for r in reports
        ],
        "finalize_s": [r.seconds.get("finalize", 0.0) for r in reports],
        "gas": [r.gas for r in reports],
        "published_bytes": [r.published_bytes for r in reports],
        "derivation_s": [v.derivation_seconds for v in verdicts],
        "model_bytes": model_bytes,
        "disputes": len(result.extra["attestations"]) - len(verdicts) - 2,  # minus round 0's attestations
    }


def main() -> None:
    """Measure and report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"plain": [], "verified": []}
    for i in range(args.repeats):
        for mode in ("plain", "verified") if i % 2 == 0 else ("verified", "plain"):
            runs[mode].append(one_run(mode, args.clients, args.rounds))

    def med(mode: str, key: str) -> float:
        values = [v for run in runs[mode] for v in run[key]]
        return statistics.median(values) if values else 0.0

    summary = {
        mode: {
            "after_training_s": med(mode, "after_training_s"),
            "finalize_s": med(mode, "finalize_s"),
            "gas": med(mode, "gas"),
            "published_bytes": med(mode, "published_bytes"),
            "derivation_s": med(mode, "derivation_s"),
            "model_bytes": runs[mode][0]["model_bytes"],
        }
        for mode in runs
    }
    plain, verified = summary["plain"], summary["verified"]
    table = Table(title=f"verified vs plain rounds ({args.clients} nodes, 2 validators, median per round)")
    for col in ("", "plain", "verified", "verified / plain"):
        table.add_column(col, justify="right")
    rows = [
        ("store + commit + finalize (s)", "after_training_s", "{:.2f}"),
        ("of which waiting for the quorum (s)", "finalize_s", "{:.2f}"),
        ("commit gas", "gas", "{:,.0f}"),
        ("validator re-derivation (s)", "derivation_s", "{:.3f}"),
        ("bytes published beside the model", "published_bytes", "{:,.0f}"),
    ]
    lines = [
        "# Verified rounds: what they cost",
        "",
        f"Measured by `bench/verified.py`: the demo (digits MLP, {args.clients} simulated nodes, "
        "1 local epoch, "
        f"cosine scores, two validators, quorum 2, nodes train only from finalized models) run "
        f"{args.repeats} times per mode, plain and verified alternating in one process, {args.rounds} rounds "
        "each; medians over rounds >= 1. The model blob is "
        f"{verified['model_bytes']:,} bytes.",
        "",
        "| | plain | verified | verified / plain |",
        "|---|---:|---:|---:|",
    ]
    for label, key, fmt in rows:
        a, b = plain[key], verified[key]
        ratio = f"{b / a:.2f}" if a else "—"
        table.add_row(label, fmt.format(a), fmt.format(b), ratio)
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
    manifest = int(verified["published_bytes"] - args.clients * verified["model_bytes"])
    disputes = sum(r["disputes"] for m in runs.values() for r in m)
    lines += [
        "",
        f"What the bytes are, per round: {args.clients} update blobs (one per included node: its trained "
        f"arrays, the size of the model, {verified['model_bytes']:,} bytes here) plus the manifest "
        f"({manifest:,} bytes: hashes, weights, scores, signatures; no arrays). Each validator downloads "
        "all of it every round; a node downloads only the manifest to find its own leaf. The "
        "coordinator's store grows by that much per round (update blobs are kept so that a round can be "
        "re-derived later, e.g. by `flchain audit`).",
        "",
        "Who may read what: update blobs are written to `STORE/updates/` with mode 0700/0600 and are never "
        "served by flchain's HTTP store; give the validators (and only them) read access, e.g. a shared "
        "volume or a bucket with access control, and point `flchain validator --updates` at it. Manifests "
        "(`STORE/rounds/`) are public. A validator sees every node's update of every round, which reveals "
        "more about a node's data than the aggregate does (gradient inversion); validators are therefore "
        "trusted with confidentiality, not with correctness.",
        "",
        f"Disputes (none expected: every run is honest): {disputes}.",
    ]
    Console().print(table)
    (ROOT / "docs" / "verified-rounds.md").write_text("\n".join(lines) + "\n")
    (ROOT / "docs" / "verified-rounds.json").write_text(
        json.dumps({"summary": summary, "runs": runs}, indent=1)
    )


if __name__ == "__main__":
    main()
