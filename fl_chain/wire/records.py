"""What travels in Flower messages between the coordinator and the nodes: message types, record and
config keys, and the array <-> record converters. Both the ServerApp and the ClientApp import this
module (and nothing of each other), so it stays free of web3 and torch."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

# The join challenge travels as a "train" message holding only the AUTH_RECORD: Flower runs a ClientApp's
# mods only for message types the app registered a function for, and every ClientApp that trains has
# registered "train", so the flchain mod can answer it in any app without the app's help.
AUTH_MESSAGE_TYPE = "train"
AUTH_RECORD = "flchain-auth"  # ConfigRecord: "nonce" (server -> node), "address" + "signature" (reply)

# Train/evaluate config keys set by the coordinator. The on-chain task id has its own key, distinct from
# the node-config key "flchain-task" that names the ML task (see wire/node_config.py).
CONFIG_TASK_ID = "flchain-task-id"
CONFIG_PARENT_ROUND = "flchain-parent-round"
# The on-chain round being trained: the parent's + 1, except after a rebase past a disputed round.
CONFIG_ROUND = "flchain-round"
CONFIG_LOCAL_STEPS = "local-steps"  # mini-batches sized to the node's declared capacity
CONFIG_TICKET = "flchain-ticket"  # verified rounds: the coordinator's signature sampling this node
WEIGHT_KEY = "num-examples"  # the metric Flower's strategies weight replies by
# ConfigRecord a node's mod adds to its training reply: "hash" (0x + the update's model hash), "weight"
# (int: the claimed WEIGHT_KEY) and "signature" (protocol/update_signing.py). Flower's strategies read only
# the ArrayRecord and the MetricRecord of a reply, so the extra record passes through them.
UPDATE_RECORD = "flchain-update"
MAX_ARRAY_HEADER = 65_536  # bytes an .npy header may take beyond the array's data (numpy's own limit)


def record_to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Named numpy arrays of an ArrayRecord (insertion order kept)."""
    return {name: array.numpy() for name, array in record.items()}


def record_views(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Named read-only numpy views of an ArrayRecord's own bytes (no copy: at 100M parameters a copy is
    400 MB), for checks that only read them (hashes, shapes); anything but a plain .npy array is decoded
    by Flower's own `numpy()` (which refuses pickles)."""
    return {name: _view(array) for name, array in record.items()}


def _view(array: Array) -> np.ndarray:
    data = array.data
    if array.stype != "numpy.ndarray" or not isinstance(data, bytes | bytearray | memoryview):
        return array.numpy()
    buffer = io.BytesIO(data)
    version = np.lib.format.read_magic(buffer)
    if version not in ((1, 0), (2, 0)):
        return array.numpy()
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = header(buffer)
    if dtype.hasobject:
        return array.numpy()
    count = int(np.prod(shape, dtype=np.int64))
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=buffer.tell())
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def record_mismatch(record: ArrayRecord, reference: Mapping[str, np.ndarray]) -> str | None:
    """Why `record` cannot be an update of the `reference` arrays, judged from its metadata alone
    (count, names, shapes, dtypes, byte sizes), or None. A reply built to exhaust memory or time (arrays
    far larger than the model's, millions of tiny arrays) is refused here, before any array is decoded."""
    if len(record) != len(reference):
        return f"{len(record)} arrays, expected the model's {len(reference)}"
    for name, array in record.items():
        expected = reference.get(name)
        if expected is None:
            return f"unexpected array {name[:64]!r}"
        shape = tuple(array.shape)
        if shape != expected.shape:
            return f"array {name!r} has shape {shape[:8]}, expected {expected.shape}"
        if array.dtype != expected.dtype.name:
            return f"array {name!r} has dtype {str(array.dtype)[:32]}, expected {expected.dtype}"
        if len(array.data) > expected.nbytes + MAX_ARRAY_HEADER:
            return f"array {name!r} carries {len(array.data):,} bytes for {expected.nbytes:,} of data"
    return None


def arrays_to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """An ArrayRecord holding exactly these arrays."""
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in arrays.items()})


def reply_parts(reply: Message) -> tuple[ArrayRecord, MetricRecord] | str:
    """The one ArrayRecord and one MetricRecord of a training reply, or why the reply is malformed."""
    records = list(reply.content.array_records.values())
    metrics = list(reply.content.metric_records.values())
    if len(records) != 1 or len(metrics) != 1:
        return "reply must hold exactly one ArrayRecord and one MetricRecord"
    return records[0], metrics[0]


def update_claim(reply: Message) -> ConfigRecord | None:
    """The node's signed claim on its update (UPDATE_RECORD), if the reply carries one."""
    return reply.content.config_records.get(UPDATE_RECORD)


def with_config(message: Message, values: Mapping[str, int | float | str]) -> Message:
    """A copy of an outgoing message whose ConfigRecords also hold `values`."""
    content = RecordDict(dict(message.content.items()))
    for key, record in message.content.config_records.items():
        content[key] = ConfigRecord({**dict(record), **values})
    return Message(
        content=content, message_type=message.metadata.message_type, dst_node_id=message.metadata.dst_node_id
    )


def with_update(
    reply: Message,
    arrays: Mapping[str, np.ndarray] | None = None,
    weight: float | None = None,
    weight_key: str = WEIGHT_KEY,
) -> Message:
    """A copy of a training reply (same sender and metadata) with other arrays and/or another weight
    metric, for wrappers that rescale or reweight updates before the wrapped strategy aggregates."""
    parts = reply_parts(reply)
    if isinstance(parts, str):
        raise ValueError(parts)
    record, metrics = parts
    new_metrics = MetricRecord(dict(metrics))
    if weight is not None:
        new_metrics[weight_key] = float(weight)
    content = RecordDict(
        {"arrays": arrays_to_record(arrays) if arrays is not None else record, "metrics": new_metrics}
    )
    return Message(content=content, metadata=reply.metadata)


def trained_round(config: Mapping[str, object]) -> int:
    """The on-chain round a train message's config asks for (CONFIG_ROUND; from a coordinator that does
    not send it, the parent round + 1)."""
    if CONFIG_ROUND in config:
        return int(config[CONFIG_ROUND])
    return int(config[CONFIG_PARENT_ROUND]) + 1
