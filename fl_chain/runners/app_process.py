"""The app process `flchain client` starts for one message: Flower's own `flwr-clientapp`, and, for a
node pinned to one app (`flchain client --app-hash HEX`), a check of the bundle first.

The SuperNode takes a run's bundle (FAB) and its hash from the SuperLink without checking one against the
other, and the coordinator runs the SuperLink; so the pin is checked here, on the bundle's bytes: the
SHA-256 of the FAB (Flower's FAB hash, what `flwr build` names the file by) and the hashes the run and
the FAB claim must all be the pinned one, before Flower installs or loads anything of the bundle. A
refused bundle never runs: Flower's own error path replies to the coordinator with the one-line reason,
and the node's signing agent signs nothing for this process either. The check wraps the two functions of
Flower's `run_clientapp` module that receive and install the bundle; everything else is Flower's."""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from fl_chain.errors import FlchainError

PIN_FLAG = "--flchain-app-hash"


def pin_bundle(pin: str) -> None:
    """Make this process's flwr-clientapp refuse any bundle but the one whose FAB hash is `pin`."""
    from flwr.supernode.runtime import run_clientapp as runtime

    claimed: set[str] = set()
    pull, install = runtime.pull_task_input, runtime.install_from_fab

    def pull_task_input(client: Any) -> Any:
        message, context, run, fab = pull(client)
        claimed.update({run.fab_hash, fab.hash_str})
        return message, context, run, fab

    def install_from_fab(content: Any, *args: Any, **kwargs: Any) -> Any:
        actual = hashlib.sha256(content if isinstance(content, bytes) else content.read_bytes()).hexdigest()
        if claimed | {actual} != {pin}:
            raise FlchainError(
                f"flchain: app bundle {actual} is not the one this node runs (--app-hash {pin}): "
                "refused, nothing of it was run or signed"
            )
        return install(content, *args, **kwargs)

    runtime.pull_task_input, runtime.install_from_fab = pull_task_input, install_from_fab


def main(argv: list[str] | None = None) -> None:
    """`python -m fl_chain.runners.app_process [--flchain-app-hash HEX] FLWR-CLIENTAPP-ARGS...`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if PIN_FLAG in args:
        at = args.index(PIN_FLAG)
        pin_bundle(args[at + 1])
        del args[at : at + 2]
    from flwr.supernode.cli.flwr_clientapp import flwr_clientapp

    sys.argv = ["flwr-clientapp", *args]
    flwr_clientapp()


if __name__ == "__main__":
    main()
