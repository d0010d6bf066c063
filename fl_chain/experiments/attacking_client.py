"""Simulated attackers' ClientApp: flchain's own ClientApp (node/client_app.py) with the attacks of
experiments/attacks.py added from outside, as a real attacker would change its own client. The demo and
the benches use it for simulations that configure attacks; an honest node never loads this module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod

from fl_chain.experiments.attacks import active_attack, apply_attack
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


def make_attack_mod(resolve: Callable[[Context], NodeConfig]) -> Mod:
    """A simulated attacker rewrites its trained model *outside* the flchain mod, as a real attacker
    would who changed its own client, so the node-side checks do not stop it first."""

    def attack_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(message, context)
        attack = resolve(context).attack
        if not attack or reply.has_error() or not message.metadata.message_type.startswith("train"):
            return reply
        if "arrays" not in message.content.array_records or "arrays" not in reply.content.array_records:
            return reply  # the join challenge and its answer carry no model
        received = record_to_arrays(message.content.array_records["arrays"])
        trained = record_to_arrays(reply.content.array_records["arrays"])
        round_number = trained_round(message.content.config_records["config"])
        reply.content["arrays"] = arrays_to_record(apply_attack(attack, received, trained, round_number))
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


def flip_labels(settings: NodeConfig, round_number: int, x: Any, y: Any) -> tuple[Any, Any]:
    """The label-flip attack's data poisoning: in the rounds a node runs it, every label is mapped to
    another class, consistently (the arrays then pass the attack mod unchanged)."""
    if active_attack(settings.attack, round_number).get("kind") == "label-flip":
        y = y.max() - y
    return x, y


def make_attacking_client_app(simulated: SimulatedNodes) -> ClientApp:
    """flchain's ClientApp for simulated nodes, each running the attack `simulated.attacks` gives it (if
    any): the attack mod outside the flchain mod, label flips on the training data."""
    return make_client_app(
        simulated, outer_mods=[make_attack_mod(simulated.for_context)], data_hook=flip_labels
    )
