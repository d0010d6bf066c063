"""The deployment file: which chain, which contract addresses and ABIs, which account holds which role.

Every command reads it by default from the state directory, so a second machine needs only this file
(plus an RPC URL it can reach) to talk to the same contracts.
"""

from __future__ import annotations

import json
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
    # Keys of the well-known development mnemonic, only for chains started by `flchain chain up`.
    dev_keys: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write atomically, so a crash never leaves half a deployment file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

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
        return cls(**data)
