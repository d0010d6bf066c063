"""Keys for a Flower App's simulated nodes. On the Simulation Engine every node shares one run config and
has no node config of its own beyond its partition id, so the flchain mod finds a simulated node's key in a
keys file the run config names (`flchain-simulated-keys`; for `flwr.simulation.run_simulation`, which has
no run config, the environment variable FLCHAIN_SIMULATED_KEYS): the deployment file and one private key
per partition id. The keys are throwaway keys of a local development chain (as `flchain demo` uses), so
the file holds them in clear, readable by its owner only; a real node uses its keystore (`flchain-key`).
With `flchain-post-claims = true` in the run config, simulated nodes also post their verified-round
claims on-chain (ModelLedger.postClaim) from the same process. Simulated nodes sign in process
(node/signer.py `LocalSigner`): a simulation runs app code its user started themselves, so there is no
coordinator's code to keep the keys from; `flchain client` nodes sign through their signing agent and
never hand a key to app code."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from fl_chain.errors import FlchainError
from fl_chain.wire.node_config import NodeConfig

RUN_CONFIG_KEY = "flchain-simulated-keys"
POST_CLAIMS_KEY = "flchain-post-claims"  # run config: simulated nodes post their claims on-chain
ENV_VAR = "FLCHAIN_SIMULATED_KEYS"


def keys_file(run_config: Mapping[str, Any]) -> Path | None:
    """The simulated-keys file a run names, if any."""
    named = run_config.get(RUN_CONFIG_KEY) or os.environ.get(ENV_VAR)
    return Path(str(named)) if named else None


def write_simulated_keys(path: Path, deployment: Path, keys: list[str]) -> Path:
    """Write the keys file (mode 0600) for simulated nodes 0..len(keys)-1 of `deployment`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"deployment": str(deployment.resolve()), "keys": keys}, fh)
    return path


@cache
def _read(path: str) -> tuple[str, tuple[str, ...]]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise FlchainError(f"run config {RUN_CONFIG_KEY!r}: cannot read {path} ({exc.strerror})") from None
    except ValueError:
        raise FlchainError(f"{path}: not JSON (expected a simulated-keys file)") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or "deployment" not in data:
        raise FlchainError(f"{path}: expected {{'deployment': FILE, 'keys': [private keys]}}")
    return str(data["deployment"]), tuple(str(k) for k in data["keys"])


def simulated_node_settings(
    path: Path, node_config: dict[str, Any], run_config: Mapping[str, Any] | None = None
) -> NodeConfig:
    """The settings of the simulated node whose node config (partition id) is `node_config`; the run
    config's POST_CLAIMS_KEY (true/1) makes every simulated node post its verified-round claims."""
    deployment, keys = _read(str(path))
    post = (run_config or {}).get(POST_CLAIMS_KEY, node_config.get(POST_CLAIMS_KEY))
    extra = {} if post is None else {POST_CLAIMS_KEY: post}
    settings = NodeConfig.from_node_config({**node_config, **extra, "flchain-deployment": deployment})
    if settings.partition_id >= len(keys):
        raise FlchainError(
            f"{path}: no key for simulated node {settings.partition_id} (the file has {len(keys)})"
        )
    return replace(settings, private_key=keys[settings.partition_id])
