"""Time of `flchain audit` for a task with many rounds (default 100 rounds x 5 participants).

Starts anvil, commits the rounds with real blobs in a local store, then times the task audit
(blobs, parent chain, participants active) and the reputation replay. Writes docs/audit.md.
Usage: .venv/bin/python bench/audit.py [--rounds 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task  # noqa: E402
from fl_chain.chain.setup import bootstrap  # noqa: E402
from fl_chain.store import ModelStore  # noqa: E402
from fl_chain.verify.audit import audit_reputation, audit_task  # noqa: E402


def main() -> None:
    """Build the history, time the audit, write docs/audit.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = bootstrap.start_local(Path(tmp))
        try:
            client, coordinator = local.client, local.coordinator
            nodes = [n.address for n in bootstrap.register_nodes(client, 5)]
            store = ModelStore(Path(tmp) / "store")
            task = create_task(client, coordinator, b"\x01" * 32, store.base_uri)
            parent = ZERO_HASH
            rng = np.random.default_rng(0)
            for rnd in range(args.rounds):
                digest, _ = store.put_arrays({"w": rng.normal(size=(64, 64)).astype(np.float32)})
                scores = {n: 800_000 + 10_000 * i for i, n in enumerate(nodes)} if rnd else {}
                commit_round(client, coordinator, task, rnd, digest, "", parent, scores)
                parent = digest
            started = time.perf_counter()
            findings = audit_task(client, task)
            task_seconds = time.perf_counter() - started
            started = time.perf_counter()
            findings += audit_reputation(client)
            reputation_seconds = time.perf_counter() - started
        finally:
            local.stop()
    assert all(f.ok for f in findings)
    text = (
        "# Audit time\n\n"
        f"Measured by `bench/audit.py` on anvil: a task with {args.rounds} rounds x {len(nodes)} "
        "participants, 16 KiB blobs in a local store.\n\n"
        "| part | checks | seconds |\n|---|---:|---:|\n"
        f"| rounds: blob re-hash, parent chain, participants active | {len(findings) - len(nodes)} | "
        f"{task_seconds:.2f} |\n"
        f"| reputation replayed from events | {len(nodes)} | {reputation_seconds:.2f} |\n"
    )
    (ROOT / "docs" / "audit.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
