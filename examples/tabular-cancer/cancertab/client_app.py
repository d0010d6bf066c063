"""The ClientApp: a plain Flower ClientApp; `mods=[flchain_mod]` is the one flchain line."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from cancertab.task import build_model, node_data, train
from fl_chain.ext import flchain_mod

app = ClientApp(mods=[flchain_mod])  # flchain


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    """Train the received model on this node's rows."""
    model = build_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    config = msg.content["config"]
    x, y = node_data(int(context.node_config["partition-id"]), int(context.node_config["num-partitions"]))
    loss = train(model, x, y, int(config["local-epochs"]), float(config["lr"]))
    metrics = MetricRecord({"num-examples": len(y), "train-loss": loss})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)
