"""The ClientApp: a plain Flower ClientApp; `mods=[...]` is the one flchain line."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_chain.ext import make_flchain_mod
from widemlp.task import APP_ID, Net, node_batch, train

app = ClientApp(mods=[make_flchain_mod(app=APP_ID)])  # flchain: identity, registration and model checks


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    """One step on this node's synthetic batch from the received model."""
    net = Net(int(context.run_config["params"]))
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = node_batch(int(context.node_config["partition-id"]))
    loss = train(net, x, y, float(msg.content["config"]["lr"]))
    metrics = MetricRecord({"num-examples": len(y), "train-loss": loss})
    return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics}), reply_to=msg)
