"""The simulated attackers' ClientApp lives in experiments/: honest nodes never load it, and its data
hook flips labels exactly in the rounds a node runs label-flip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from fl_chain.experiments.attacking_client import poison_data
from fl_chain.experiments.attacks import apply_attack
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


def test_label_push_trains_on_one_labels_examples_and_boosts_the_update() -> None:
    x, y = np.arange(8.0).reshape(4, 2), np.array([0, 1, 2, 1])
    px, py = poison_data(_settings({"kind": "label-push", "label": 1}), 1, x, y)
    assert py.tolist() == [1, 1] and px.tolist() == [[2.0, 3.0], [6.0, 7.0]]
    assert poison_data(_settings({"kind": "label-push", "label": 5}), 1, x, y)[1] is y  # none of it: all
    received, trained = {"w": np.zeros(2, np.float32)}, {"w": np.array([1.0, -2.0], np.float32)}
    pushed = apply_attack({"kind": "label-push", "boost": 5.0}, received, trained)
    assert pushed["w"].tolist() == [5.0, -10.0] and pushed["w"].dtype == np.float32


def test_an_honest_node_loads_no_experiments_code() -> None:
    code = (
        "import sys, fl_chain.node.client_app, fl_chain.cli_fl\n"
        "print(sorted(m for m in sys.modules if m.startswith('fl_chain.experiments')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_absent_node_answers_every_message_with_an_error_and_runs_nothing() -> None:
    """The honest-only reference (bench/robustness.py): the absent node's app never runs, so none of its
    data reaches the federation; any other attacker's app does run."""
    from flwr.app import Context, Message, RecordDict

    from fl_chain.experiments.attacking_client import ABSENT_CODE, make_attack_mod
    from tests.conftest import flower_server_identity

    calls: list[str] = []

    def app(message: Message, context: Context) -> Message:
        calls.append(message.metadata.message_type)
        return Message(RecordDict(), reply_to=message)

    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    for kind, expected_calls in (("absent", []), ("sign-flip", ["evaluate"])):
        calls.clear()
        mod = make_attack_mod(lambda _context, kind=kind: _settings({"kind": kind}))
        for message_type in ("train", "evaluate"):
            with flower_server_identity(1):
                message = Message(RecordDict(), dst_node_id=1, message_type=message_type)
            reply = mod(message, context, app)
            if kind == "absent":
                assert reply.has_error() and reply.error.code == ABSENT_CODE
            else:
                assert not reply.has_error()
        # the sign-flipper's train reply carries no model here, so only its evaluate call is checked
        assert calls == (expected_calls if kind == "absent" else ["train", "evaluate"])
