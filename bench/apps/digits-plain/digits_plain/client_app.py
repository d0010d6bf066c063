"""The ClientApp: the training `flchain client` does (fl_chain/node/client_app.py `train_locally`) with
the built-in task's own functions, as a plain Flower ClientApp without flchain's mod."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_chain.tasks.base import DataSpec
from fl_chain.tasks.digits import digits_task
from fl_chain.tasks.training import train

app = ClientApp()


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    """Local epochs on this node's IID partition of the digits training split, from the received model."""
    partition = int(context.node_config["partition-id"])
    partitions = int(context.node_config["num-partitions"])
    config = msg.content["config"]
    task = digits_task()
    # `flchain client --partition i/n` with its defaults: iid, --data-seed 42
    x, y = task.client_data(DataSpec(partition, partitions, seed=int(context.run_config["data-seed"])))
    model = task.build_model(0)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss = train(
        model,
        x,
        y,
        epochs=int(config["local-epochs"]),
        lr=float(config["lr"]),
        batch_size=int(config["batch-size"]),
        seed=int(config["seed"]) + partition,  # as flchain's ClientApp seeds each node
    )
    metrics = MetricRecord({"num-examples": len(y), "train-loss": loss})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)
