"""Hashing and storing a model at real sizes, before and after issue 28, side by side in one run.

Before: `keccak(safetensors.save(arrays))` (a serialised copy of the whole model, then one hash), one
reply after another. After: protocol/model_bytes's `hash_arrays` (safetensors' header built here, then
the hash fed each array's own buffer: no copy) and `hash_many` (a round's updates in parallel threads:
hashlib releases the GIL); the store streams the same parts to disk. The blob hash itself moved from
keccak-256 to SHA-256 on these measurements (the reference rows: keccak, sha256, blake2b, sha3-256 of
the same blob).

Per case: best of REPEATS seconds and the extra memory allocated at peak (tracemalloc: numpy and bytes
allocations are traced). Prints a table and writes docs/hashing.md and docs/hashing.json.
Usage: .venv/bin/python bench/hash_speed.py [--mb 100] [--updates 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_hash.auto import keccak  # noqa: E402
from safetensors.numpy import save as st_save  # noqa: E402

from fl_chain.protocol.model_bytes import hash_arrays, hash_many  # noqa: E402
from fl_chain.store import ModelStore  # noqa: E402

console = Console()


def model(mb: int, seed: int) -> dict[str, np.ndarray]:
    """`mb` MB of float32 arrays shaped like a network's layers (10 weight matrices and their biases)."""
    rng = np.random.default_rng(seed)
    side = int((mb * 2**20 / 4 / 10) ** 0.5)
    arrays = {}
    for i in range(10):
        arrays[f"layer{i}.weight"] = rng.standard_normal((side, side), dtype=np.float32)
        arrays[f"layer{i}.bias"] = rng.standard_normal(side, dtype=np.float32)
    return arrays


def measure(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best seconds, peak extra MB allocated) of `fn` over `repeats` calls."""
    best, peak = float("inf"), 0.0
    for _ in range(repeats):
        tracemalloc.start()
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    return best, peak


def old_hash(arrays: dict[str, np.ndarray]) -> bytes:
    """The hash as computed before issue 28: serialise the whole model, then keccak."""
    return keccak(st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))


def cases(mb: int, updates: int, store: ModelStore) -> dict[str, Callable[[], object]]:
    """Name -> the work it measures."""
    one = model(mb, 0)
    many = [model(mb, i + 1) for i in range(updates)]
    blob = st_save(one)
    old_store = ModelStore(store.directory / "old")

    def old_put() -> None:
        for path in old_store.directory.glob("*"):
            path.unlink()
        old_store.put(st_save(one))

    def new_put() -> None:
        for path in store.directory.glob("[0-9a-f]*"):
            path.unlink()
        store.put_arrays(one)

    return {
        "keccak of the blob (reference)": lambda: keccak(blob),
        "sha256 of the blob (reference)": lambda: hashlib.sha256(blob).digest(),
        "blake2b of the blob (reference)": lambda: hashlib.blake2b(blob).digest(),
        "sha3-256 of the blob (reference)": lambda: hashlib.sha3_256(blob).digest(),
        "model hash, before": lambda: old_hash(one),
        "model hash, after": lambda: hash_arrays(one),
        f"{updates} updates, before (one by one)": lambda: [old_hash(m) for m in many],
        f"{updates} updates, after (hash_many)": lambda: hash_many(many),
        "store write, before (serialise + write + fsync)": old_put,
        "store write, after (streamed + fsync)": new_put,
    }


def main() -> None:
    """Measure and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "hashing")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="flchain-hash-") as tmp:
        store = ModelStore(Path(tmp) / "store")
        for name, fn in cases(args.mb, args.updates, store).items():
            seconds, peak = measure(fn, args.repeats)
            rows.append({"case": name, "seconds": seconds, "peak_extra_mb": peak})
            console.print(f"{name}: {seconds:.3f} s, +{peak:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=1)
    )
    table = Table(title=f"hashing and storing a {args.mb} MB model")
    for col in ("case", "seconds", "MB/s", "extra memory MB"):
        table.add_column(col, justify="right")
    lines = [
        "# Hashing and storing a model at real sizes",
        "",
        f"Measured by `bench/hash_speed.py` on {os.cpu_count()} shared cores: a {args.mb} MB model (float32, "
        f"10 layers), {args.updates} updates of the same size for a round's replies, best of {args.repeats}. "
        "Extra memory: peak bytes allocated during the call (tracemalloc), beyond the model itself.",
        "",
        "| case | seconds | MB/s | extra memory MB |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        volume = args.mb * (args.updates if "updates" in row["case"] else 1)
        rate = f"{volume / row['seconds']:.0f}"
        lines.append(f"| {row['case']} | {row['seconds']:.3f} | {rate} | {row['peak_extra_mb']:.0f} |")
        table.add_row(row["case"], f"{row['seconds']:.3f}", rate, f"{row['peak_extra_mb']:.0f}")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print(table)


if __name__ == "__main__":
    main()
