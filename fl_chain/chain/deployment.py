"""The deployment file: which chain, which contract addresses and ABIs, which account holds which role.

Every command reads it by default from the state directory, so a second machine needs only this file
(plus an RPC URL it can reach) to talk to the same contracts. It never holds a private key: it is the
file handed to every node. The development keys of a local chain (`flchain chain up` on loopback) go to
a separate 0600 file beside it (`deployment.dev-keys.json` for `deployment.json`), bound to the chain id
and registry, which only commands on the same machine read and which is never copied to a node.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fl_chain.errors import FlchainError, read_text_file

DEPLOYMENT_FILE = "deployment.json"
_REQUIRED = ("chain_id", "rpc_url", "contracts", "abis", "roles")


@dataclass
class Deployment:
    """Where the flchain contracts live and who administers them."""

    chain_id: int
    rpc_url: str
    contracts: dict[str, str]
    abis: dict[str, list[dict[str, Any]]]
    roles: dict[str, str]
    backend: str = "external"
    deployed_block: int = 0
    # Keys of the well-known development mnemonic, only for loopback chains started by `flchain chain
    # up`; kept in memory and in the separate dev-keys file (dev_keys_path), never in the deployment file.
    dev_keys: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write the key-free deployment file atomically (a crash never leaves half a file) and, if this
        deployment has development keys, the 0600 dev-keys file beside it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        public = {k: v for k, v in asdict(self).items() if k != "dev_keys"}
        _write_atomically(path, json.dumps(public, indent=2), 0o644)
        if self.dev_keys:
            binding = {"chain_id": self.chain_id, "NodeRegistry": self.contracts.get("NodeRegistry", "")}
            _write_atomically(dev_keys_path(path), json.dumps({**binding, "keys": self.dev_keys}), 0o600)

    def _load_dev_keys(self, path: Path) -> None:
        """The development keys from the dev-keys file beside `path`, if it is this deployment's."""
        keys_file = dev_keys_path(path)
        if self.dev_keys or not keys_file.is_file():
            return
        try:
            data = json.loads(read_text_file(keys_file, "dev-keys file"))
        except ValueError:
            raise FlchainError(f"{keys_file}: not valid JSON") from None
        registry = str(self.contracts.get("NodeRegistry", "")).lower()
        if (
            isinstance(data, dict)
            and data.get("chain_id") == self.chain_id
            and str(data.get("NodeRegistry", "")).lower() == registry
            and isinstance(data.get("keys"), dict)
        ):
            self.dev_keys = {str(k): str(v) for k, v in data["keys"].items()}

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a deployment file, with a one-line error naming the file and the problem."""
        if not path.exists():
            raise FlchainError(
                f"deployment file {path} not found: start a chain with `flchain chain up` "
                "or pass --deployment"
            )
        try:
            data = json.loads(read_text_file(path, "deployment file"))
        except ValueError as exc:
            raise FlchainError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise FlchainError(f"{path}: expected a JSON object")
        for key in _REQUIRED:
            if key not in data:
                raise FlchainError(f"{path}: missing field {key!r}")
        for key, kind in (("chain_id", int), ("rpc_url", str), ("contracts", dict), ("abis", dict)):
            if not isinstance(data[key], kind) or isinstance(data[key], bool):
                raise FlchainError(f"{path}: field {key!r}: expected {kind.__name__}")
        for name in ("NodeRegistry", "Reputation", "ModelLedger"):
            if name not in data["contracts"] or name not in data["abis"]:
                raise FlchainError(f"{path}: field 'contracts' has no address or ABI for {name}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise FlchainError(f"{path}: unknown field {sorted(unknown)[0]!r}")
        deployment = cls(**data)
        deployment._load_dev_keys(path)
        return deployment


def dev_keys_path(deployment_path: Path) -> Path:
    """Where the development keys of the deployment file `deployment_path` are kept (mode 0600)."""
    return deployment_path.with_name(deployment_path.stem + ".dev-keys.json")


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Write `text` through a temporary file created with `mode`, then rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)  # an existing temporary file keeps its old mode through O_CREAT
    tmp.replace(path)
