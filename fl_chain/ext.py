"""flchain inside your own Flower App: the three names an app needs.

Server side, around any Flower strategy instance (FedAvg, your own subclass, ...)::

    strategy = ChainStrategy.with_ledger(FedAvg(...), LedgerSession.from_context(context))
    strategy.start(grid=grid, initial_arrays=..., num_rounds=..., evaluate_fn=my_central_eval)

Client side, one mod::

    app = ClientApp(mods=[flchain_mod])

Run with `flchain server --app PATH` (which starts the SuperLink and hands the app its ledger) and nodes
started by `flchain client --key KEY`, or by plain `flower-supernode --node-config
"flchain-deployment='FILE' flchain-key='KEYSTORE'"` with FLCHAIN_KEY_PASSWORD in its environment."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fl_chain.coordinator.ledger_session import LedgerSession
    from fl_chain.coordinator.strategy import ChainStrategy
    from fl_chain.node.chain_mod import flchain_mod, make_flchain_mod
    from fl_chain.protocol.task_identity import identity_hash

# Each name is imported on first use: a ClientApp module that takes only the mod must not pay for the
# server side (web3, the strategy) in every process Flower starts for a message.
_SOURCES = {
    "ChainStrategy": "fl_chain.coordinator.strategy",
    "LedgerSession": "fl_chain.coordinator.ledger_session",
    "flchain_mod": "fl_chain.node.chain_mod",
    "make_flchain_mod": "fl_chain.node.chain_mod",
    "identity_hash": "fl_chain.protocol.task_identity",
}

__all__ = ["ChainStrategy", "LedgerSession", "flchain_mod", "identity_hash", "make_flchain_mod"]


def __getattr__(name: str) -> Any:
    """The exported object `name`, imported from its module on first access."""
    if name not in _SOURCES:
        raise AttributeError(f"module 'fl_chain.ext' has no attribute {name!r}")
    return getattr(import_module(_SOURCES[name]), name)
