"""NodeConfig: the one schema between `flchain client` (which writes a SuperNode's --node-config) and
the ClientApp (which reads it back from `context.node_config`). Simulated nodes get the same dataclass
built in process, with a private key and an optional attack that never travel in a node config."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fl_chain.errors import FlchainError
from fl_chain.tasks.partition import PARTITIONINGS

MODEL_SOURCES = ("message", "store")
# The `flchain client` option that sets each field, for error messages users can act on.
_OPTIONS = {
    "partition_id": "--partition",
    "partitioning": "--partitioning",
    "alpha": "--alpha",
    "model_source": "--model-source",
    "data_path": "--data",
}

# dataclass field -> node-config key (Flower's partition keys keep Flower's names).
_KEYS = {
    "deployment": "flchain-deployment",
    "rpc": "flchain-rpc",
    "key_path": "flchain-key",
    "partition_id": "partition-id",
    "num_partitions": "num-partitions",
    "partitioning": "flchain-partitioning",
    "alpha": "flchain-alpha",
    "data_seed": "flchain-data-seed",
    "data_path": "flchain-data",
    "task": "flchain-task",
    "model_source": "flchain-model-source",
    "finalized_only": "flchain-finalized-only",
    "post_claims": "flchain-post-claims",
    "parent_wait": "flchain-parent-wait",
}


@dataclass(frozen=True)
class NodeConfig:
    """Everything a ClientApp needs, independent of how the node was started."""

    deployment: Path
    rpc: str | None = None
    key_path: Path | None = None
    private_key: str | None = None  # simulation only: the demo's throwaway keys
    partition_id: int = 0
    num_partitions: int = 1
    partitioning: str = "iid"
    alpha: float = 0.5
    data_seed: int = 42
    data_path: Path | None = None
    task: str = "digits"  # the ML task: "digits" or "module:attr" naming a TaskSpec
    model_source: str = "message"  # "message": verify received arrays; "store": load the committed blob
    finalized_only: bool = False  # train only from models the validator quorum finalized
    post_claims: bool = False  # verified rounds: post the signed claim on-chain before replying
    parent_wait: float = 60.0  # after training, wait up to this long for the parent round to land on-chain
    attack: dict = field(default_factory=dict)  # simulation only: experiments with misbehaving nodes

    def validate(self) -> NodeConfig:
        """Self, or a one-line error naming the field and what was expected."""
        if not 0 <= self.partition_id < self.num_partitions:
            raise FlchainError(
                f"{_name('partition_id')} {self.partition_id}/{self.num_partitions}: "
                "expected i/n with 0 <= i < n"
            )
        if self.partitioning not in PARTITIONINGS:
            raise FlchainError(
                f"{_name('partitioning')} {self.partitioning!r}: expected {', '.join(PARTITIONINGS)}"
            )
        if self.alpha <= 0:
            raise FlchainError(f"{_name('alpha')} {self.alpha}: expected > 0")
        if self.model_source not in MODEL_SOURCES:
            raise FlchainError(f"{_name('model_source')} {self.model_source!r}: expected message or store")
        if self.data_path is not None and not self.data_path.exists():
            raise FlchainError(f"{_name('data_path')} {self.data_path}: file does not exist")
        return self

    def to_node_config(self) -> dict[str, str | int | float]:
        """The SuperNode's node config (paths absolute; simulation-only fields left out)."""
        out: dict[str, str | int | float] = {}
        for name, key in _KEYS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, Path):
                value = str(value.resolve())
            elif isinstance(value, bool):
                value = int(value)
            out[key] = value
        return out

    @classmethod
    def from_node_config(cls, node_config: dict[str, Any]) -> NodeConfig:
        """Inverse of `to_node_config`; a one-line error for a missing or malformed value."""
        if node_config.get("flchain-deployment") in (None, ""):
            raise FlchainError(
                "node config has no 'flchain-deployment': start the node with `flchain client`, or give "
                "flower-supernode --node-config \"flchain-deployment='FILE' flchain-key='KEYSTORE'\""
            )
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, key in _KEYS.items():
            raw = node_config.get(key)
            if raw in (None, ""):
                continue
            try:
                values[name] = _parse(types[name], raw)
            except ValueError:
                raise FlchainError(f"node config {key!r}: cannot read {raw!r} as {types[name]}") from None
        return cls(**values).validate()

    def for_partition(self, partition_id: int, num_partitions: int, **changes: Any) -> NodeConfig:
        """The same settings for another simulated partition."""
        return replace(self, partition_id=partition_id, num_partitions=num_partitions, **changes)


def _name(field_name: str) -> str:
    return f"{_OPTIONS[field_name]} (node config {_KEYS[field_name]!r})"


def _parse(annotation: str, raw: Any) -> Any:
    if "Path" in annotation:
        return Path(str(raw))
    if annotation.startswith("bool"):
        return bool(int(raw))
    if annotation.startswith("int"):
        return int(raw)
    if annotation.startswith("float"):
        return float(raw)
    return str(raw)


def parse_partition(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n, or a one-line error."""
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise FlchainError(f"--partition {text!r}: expected i/n with 0 <= i < n, e.g. 0/3")
    return int(match.group(1)), int(match.group(2))
