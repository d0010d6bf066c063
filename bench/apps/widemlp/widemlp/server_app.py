"""The ServerApp: FedAvg wrapped in flchain's ChainStrategy (the two flchain lines are marked)."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fl_chain.ext import ChainStrategy, LedgerSession
from widemlp.task import APP_ID, Net

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Federated training for `num-server-rounds` rounds, no evaluation."""
    cfg = context.run_config
    strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=int(cfg["min-nodes"]))
    ledger = LedgerSession.from_context(context)  # flchain
    strategy = ChainStrategy.with_ledger(strategy, ledger, app=APP_ID)  # flchain
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(Net(int(cfg["params"])).state_dict()),
        num_rounds=int(cfg["num-server-rounds"]),
        train_config=ConfigRecord({"lr": float(cfg["lr"])}),
    )
