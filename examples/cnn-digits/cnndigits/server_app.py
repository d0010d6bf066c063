"""The ServerApp: FedAvg wrapped in flchain's ChainStrategy (the two flchain lines are marked)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from cnndigits.task import APP_ID, Net, server_data, test, train
from fl_chain.ext import ChainStrategy, LedgerSession

app = ServerApp()


def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Test loss and accuracy of the global model on the server's test split."""
    net = Net()
    net.load_state_dict(arrays.to_torch_state_dict())
    loss, accuracy = test(net, *server_data("test"))
    return MetricRecord({"loss": loss, "accuracy": accuracy})


def train_on_root(arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The server's own update on its clean root set, with the nodes' settings (flchain's anchor)."""
    net = Net()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    train(net, *server_data("root"), int(config["local-epochs"]), float(config["lr"]))
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Federated training for `num-server-rounds` rounds."""
    cfg = context.run_config
    strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=int(cfg["min-nodes"]))
    ledger = LedgerSession.from_context(context)  # flchain
    strategy = ChainStrategy.with_ledger(strategy, ledger, app=APP_ID, root_fn=train_on_root)  # flchain
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(Net().state_dict()),
        num_rounds=int(cfg["num-server-rounds"]),
        train_config=ConfigRecord({"local-epochs": int(cfg["local-epochs"]), "lr": float(cfg["lr"])}),
        evaluate_fn=central_evaluate,
    )
    print(f"final accuracy {result.evaluate_metrics_serverapp[max(result.evaluate_metrics_serverapp)]}")
