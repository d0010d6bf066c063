"""The ServerApp: FedAvg wrapped in flchain's ChainStrategy (the flchain lines are marked). No root set
here, so scores are cosine similarities and nobody is penalized for an update's content."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from cancertab.task import build_model, test, test_data
from fl_chain.ext import ChainStrategy, LedgerSession

app = ServerApp()


def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Test loss and accuracy of the global model."""
    model = build_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    loss, accuracy = test(model, *test_data())
    return MetricRecord({"loss": loss, "accuracy": accuracy})


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Federated training for `num-server-rounds` rounds."""
    cfg = context.run_config
    strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=int(cfg["min-nodes"]))
    strategy = ChainStrategy.with_ledger(strategy, LedgerSession.from_context(context))  # flchain
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(build_model().state_dict()),
        num_rounds=int(cfg["num-server-rounds"]),
        train_config=ConfigRecord({"local-epochs": int(cfg["local-epochs"]), "lr": float(cfg["lr"])}),
        evaluate_fn=central_evaluate,
    )
