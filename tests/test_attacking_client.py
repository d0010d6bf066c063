"""The simulated attackers' ClientApp lives in experiments/: honest nodes never load it, and its data
hook flips labels exactly in the rounds a node runs label-flip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from fl_chain.experiments.attacking_client import poison_data
from fl_chain.wire.node_config import NodeConfig


def _settings(attack: dict) -> NodeConfig:
    return NodeConfig(deployment=Path("deployment.json")).for_partition(
        0, 1, private_key="0x01", attack=attack
    )


def test_label_flip_maps_every_label_to_another_class_in_its_rounds_only() -> None:
    x, y = np.zeros((4, 2)), np.array([0, 1, 2, 9])
    assert poison_data(_settings({"kind": "label-flip"}), 1, x, y)[1].tolist() == [9, 8, 7, 0]
    assert poison_data(_settings({"kind": "sign-flip"}), 1, x, y)[1].tolist() == [0, 1, 2, 9]
    assert poison_data(_settings({}), 1, x, y)[1].tolist() == [0, 1, 2, 9]
    on_off = {"kind": "on-off", "after": 2, "then": {"kind": "label-flip"}}
    assert poison_data(_settings(on_off), 2, x, y)[1].tolist() == [0, 1, 2, 9]
    assert poison_data(_settings(on_off), 3, x, y)[1].tolist() == [9, 8, 7, 0]
    assert poison_data(_settings({"kind": "label-flip"}), 1, x, y)[0] is x


def test_an_honest_node_loads_no_experiments_code() -> None:
    code = (
        "import sys, fl_chain.node.client_app, fl_chain.cli_fl\n"
        "print(sorted(m for m in sys.modules if m.startswith('fl_chain.experiments')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
