"""Run a Flower App's ServerApp and ClientApp with `flwr.simulation.run_simulation`, in one process: the
path `flchain demo` takes, deprecated in Flower 1.42. bench/overhead.py compares it with the supported
path (`flwr run` against a `--simulation` SuperLink) on the same app.

run_simulation has no run config: the app's defaults from its pyproject, updated with the overrides
given here, are put into the ServerApp's context; a flchain ClientApp finds its simulated keys through
FLCHAIN_SIMULATED_KEYS in the environment.
Usage: python bench/run_simulation_app.py APP_DIR NODES RUN_CONFIG_JSON
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation


def component(reference: str) -> object:
    """The object a `module:attr` reference names."""
    module, attr = reference.split(":")
    return getattr(importlib.import_module(module), attr)


def main() -> None:
    """Run the app once."""
    app_dir, nodes, overrides = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    sys.path.insert(0, str(app_dir))
    flwr = tomllib.loads((app_dir / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    run_config = {**flwr.get("config", {}), **overrides}
    user_server = component(flwr["components"]["serverapp"])
    client = component(flwr["components"]["clientapp"])

    server = ServerApp()

    @server.main()
    def with_run_config(grid: Grid, context: Context) -> None:
        context.run_config.update(run_config)
        user_server(grid, context)

    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=nodes,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )


if __name__ == "__main__":
    main()
