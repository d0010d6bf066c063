"""`flchain audit` on a real chain and store: clean history passes; a corrupted and a deleted blob are
named exactly, with nothing edited on-chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task
from fl_chain.cli import run
from fl_chain.store import ModelStore
from fl_chain.verify.audit import audit_reputation, audit_task
from tests.chainutil import LocalChain, new_nodes
from tests.test_cli_chain_node import assert_one_line_error


def _history(chain: LocalChain, store: ModelStore, rounds: int = 4) -> tuple[int, list[bytes]]:
    client = chain.client
    nodes = [n.address for n in new_nodes(chain, 3)]
    task = create_task(client, chain.coordinator, b"\x07" * 32, store.base_uri)
    parent, hashes = ZERO_HASH, []
    for rnd in range(rounds):
        digest, _ = store.put_arrays({"w": np.full((2, 2), rnd, dtype=np.float32)})
        # Round 0 scores node 2 (a member of the task from then on: only members can be charged).
        scores = {nodes[2]: 500_000} if rnd == 0 else {nodes[0]: 900_000, nodes[1]: 400_000 + 100_000 * rnd}
        missed = [nodes[2]] if rnd == 1 else []
        penalized = [nodes[2]] if rnd == 2 else []
        commit_round(client, chain.coordinator, task, rnd, digest, "", parent, scores, missed, penalized)
        parent = digest
        hashes.append(digest)
    return task, hashes


def test_clean_history_passes_and_damage_is_named(
    chain: LocalChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "store")
    task, hashes = _history(chain, store)
    findings = audit_task(chain.client, task) + audit_reputation(chain.client)
    assert findings and all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert {f.check for f in findings} == {
        "hash",
        "parent chain",
        "blob",
        "participants active",
        "reputation",
    }

    corrupted = store.local_path(hashes[1])
    corrupted.write_bytes(corrupted.read_bytes()[:-1] + b"\x00")
    store.local_path(hashes[2]).unlink()
    failures = [(f.where, f.check) for f in audit_task(chain.client, task) if not f.ok]
    assert failures == [(f"task {task} round 1", "blob"), (f"task {task} round 2", "blob")]
    assert all(f.ok for f in audit_reputation(chain.client))

    home = tmp_path / "home"
    home.mkdir()
    chain.client.deployment.save(home / "deployment.json")
    code = run(["audit", "--task", str(task), "--home", str(home)])
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.err, "audit found 2 discrepancies", "round 1 blob", "round 2 blob")
    assert captured.out.count("FAIL") == 2 and "2 discrepancies" in captured.out
