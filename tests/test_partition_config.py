"""Partitioning and typed configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.config import RunConfig, load_config
from fl_chain.errors import FlchainError
from fl_chain.tasks.partition import partition_indices


@pytest.mark.parametrize("method", ["iid", "dirichlet", "shards"])
def test_partitions_are_disjoint_cover_and_deterministic(method: str) -> None:
    labels = np.repeat(np.arange(10), 60)
    parts = partition_indices(labels, 6, method, alpha=0.3, seed=3)
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist())) == len(labels)
    assert all(len(p) >= 10 for p in parts)
    again = partition_indices(labels, 6, method, alpha=0.3, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_non_iid_partitions_are_skewed() -> None:
    labels = np.repeat(np.arange(10), 60)
    iid = partition_indices(labels, 5, "iid", seed=1)
    skewed = partition_indices(labels, 5, "dirichlet", alpha=0.1, seed=1)
    shards = partition_indices(labels, 5, "shards", seed=1)

    def classes(parts: list[np.ndarray]) -> float:
        return float(np.mean([len(np.unique(labels[p])) for p in parts]))

    assert classes(iid) == 10
    assert classes(skewed) < 8 and classes(shards) <= 4


def test_config_rejects_unknown_names_with_file_and_field(tmp_path: Path) -> None:
    cases = {
        '[federation]\nstrategy = "FedMagic"\n': "field 'federation.strategy': unknown strategy 'FedMagic'",
        "[federation]\nroundz = 3\n": "unknown field 'federation.roundz'",
        "[nonsense]\nx = 1\n": "unknown section [nonsense]",
        '[federation]\nrounds = "five"\n': "field 'federation.rounds': expected int, got str",
        "[task\n": "invalid TOML",
        '[ledger]\nmode = "rollup"\n': "field 'ledger.mode': expected plain, verified, commitment, got",
        "[ledger]\ncheckpoint_every = 0\n": "field 'ledger.checkpoint_every': expected >= 1, got 0",
    }
    for text, message in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(FlchainError, match=message.replace("[", r"\[").replace("(", r"\(")) as info:
            load_config(path)
        assert str(path) in str(info.value)
    with pytest.raises(FlchainError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    assert load_config(Path("configs/demo.toml")) == RunConfig()  # the defaults, written out
