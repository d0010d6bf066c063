"""Simulated attackers' ClientApp: flchain's own ClientApp (node/client_app.py) with the attacks of
experiments/attacks.py added from outside, as a real attacker would change its own client. The demo and
the benches use it for simulations that configure attacks; an honest node never loads this module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod

from fl_chain.experiments.attacks import BACKDOORS, active_attack, apply_attack
from fl_chain.experiments.backdoor import poison, trigger_pixels
from fl_chain.node.chain_mod import identity_for, sign_reply
from fl_chain.node.client_app import SimulatedNodes, make_client_app
from fl_chain.wire.node_config import NodeConfig
from fl_chain.wire.records import (
    UPDATE_RECORD,
    WEIGHT_KEY,
    arrays_to_record,
    record_to_arrays,
    trained_round,
)

ABSENT_CODE = 4040  # the error an absent node answers with (Flower's own ErrorCode values are small)


def make_attack_mod(resolve: Callable[[Context], NodeConfig]) -> Mod:
    """A simulated attacker rewrites its trained model *outside* the flchain mod, as a real attacker
    would who changed its own client, so the node-side checks do not stop it first."""

    def attack_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        attack = resolve(context).attack
        if attack and attack.get("kind") == "absent":  # the honest-only reference: this node is not there
            absent = Error(code=ABSENT_CODE, reason="absent (honest-only reference)")
            return Message(error=absent, reply_to=message)
        reply = call_next(message, context)
        if not attack or reply.has_error() or not message.metadata.message_type.startswith("train"):
            return reply
        if "arrays" not in message.content.array_records or "arrays" not in reply.content.array_records:
            return reply  # the join challenge and its answer carry no model
        received = record_to_arrays(message.content.array_records["arrays"])
        trained = record_to_arrays(reply.content.array_records["arrays"])
        round_number = trained_round(message.content.config_records["config"])
        state = load_state(context)
        reply.content["arrays"] = arrays_to_record(
            apply_attack(attack, received, trained, round_number, state)
        )
        save_state(context, state)
        active = active_attack(attack, round_number)
        if active.get("kind") == "lie-examples":
            for metrics in reply.content.metric_records.values():
                metrics[WEIGHT_KEY] = active["value"]  # what a buggy or hostile app would claim
        if active.get("kind") == "unsigned":  # the reply goes out without the node's claim on its update
            reply.content.config_records.pop(UPDATE_RECORD, None)
            return reply
        if UPDATE_RECORD in reply.content.config_records:
            # The attacker controls its client and key: it signs what it really sends, so its poisoned
            # update is judged on its merits, not caught by a signature it would never get wrong.
            sign_reply(identity_for(resolve(context)), message, reply)
        return reply

    return attack_mod


STATE_ARRAYS, STATE_SCALARS = "attack-arrays", "attack-scalars"  # in the node's Context.state


def load_state(context: Context) -> dict[str, object]:
    """What a multi-round attack remembers (experiments/multi_round.py), from the node's Context.state,
    which Flower keeps per node across rounds (a simulated node may run in any worker)."""
    state: dict[str, object] = {}
    if STATE_ARRAYS in context.state.array_records:
        state |= record_to_arrays(context.state.array_records[STATE_ARRAYS])
    if STATE_SCALARS in context.state.config_records:
        state |= dict(context.state.config_records[STATE_SCALARS])
    return state


def save_state(context: Context, state: dict[str, object]) -> None:
    """Keep `state` in the node's Context.state: vectors as arrays, numbers as config."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    if arrays:
        context.state[STATE_ARRAYS] = arrays_to_record(arrays)
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    if scalars:
        context.state[STATE_SCALARS] = ConfigRecord(scalars)


def poison_data(settings: NodeConfig, round_number: int, x: Any, y: Any) -> tuple[Any, Any]:
    """Data poisoning in the rounds a node runs it: label-flip maps every label to another class,
    consistently; label-push keeps only the examples of its `label` (default 0; all if it has none); backdoor
    (BadNets) and dba stamp the attacker's trigger (or its part) on a `fraction`
    of the examples (default 0.5) relabelled `target` (default 0). The arrays then pass the attack mod
    unchanged unless it masks or boosts them."""
    active = active_attack(settings.attack, round_number)
    if active.get("kind") == "label-flip":
        y = y.max() - y
    elif active.get("kind") == "label-push" and (y == int(active.get("label", 0))).any():
        keep = y == int(active.get("label", 0))  # trains on one label's examples only, as such a node would
        x, y = x[keep], y[keep]
    elif active.get("kind") in BACKDOORS:
        target, fraction = int(active.get("target", 0)), float(active.get("fraction", 0.5))
        x, y = poison(x, y, trigger_pixels(active), target, fraction, seed=round_number)
    return x, y


def make_attacking_client_app(simulated: SimulatedNodes) -> ClientApp:
    """flchain's ClientApp for simulated nodes, each running the attack `simulated.attacks` gives it (if
    any): the attack mod outside the flchain mod, label flips and backdoor triggers on the training data."""
    return make_client_app(
        simulated, outer_mods=[make_attack_mod(simulated.for_context)], data_hook=poison_data
    )
