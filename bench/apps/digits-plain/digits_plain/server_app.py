"""The ServerApp: FedAvg over every node each round and an evaluate_fn on the digits test split, as
flchain's own ServerApp runs the built-in task (fl_chain/coordinator/server_app.py), without the ledger
and without the server's root-set training."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fl_chain.tasks.digits import digits_task
from fl_chain.tasks.training import evaluate

ROUND_TIMEOUT = 300.0  # flchain's federation.round_timeout default

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Federated training for `num-server-rounds` rounds, the global model tested after each."""
    cfg = context.run_config
    seed, nodes = int(cfg["seed"]), int(cfg["min-nodes"])
    task = digits_task()
    _, (x_test, y_test) = task.server_data(seed)
    model = task.build_model(seed)  # the same initial model as flchain's round 0

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Test loss and accuracy of the global model."""
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy = evaluate(model, x_test, y_test)
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    strategy = FedAvg(
        fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes
    )
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=ROUND_TIMEOUT,
        train_config=ConfigRecord(
            {
                "local-epochs": int(cfg["local-epochs"]),
                "lr": float(cfg["lr"]),
                "batch-size": int(cfg["batch-size"]),
                "seed": seed,
            }
        ),
        evaluate_fn=central_evaluate,
    )
