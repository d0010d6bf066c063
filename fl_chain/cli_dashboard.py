"""`flchain dashboard`: serve the read-only web view of a federation's ledger."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from fl_chain.cli_common import (
    DeploymentOpt,
    HomeOpt,
    RpcOpt,
    chain_from_options,
    console,
    err_console,
    sigterm_as_interrupt,
)
from fl_chain.extras import require_extra
from fl_chain.paths import state_home


def dashboard(
    host: Annotated[
        str, typer.Option(help="Address to serve on (loopback unless --allow-remote)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on")] = 8600,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Allow a non-loopback --host (anyone who reaches it can read)"),
    ] = False,
    store: Annotated[
        list[str] | None,
        typer.Option(
            help="A store of yours that verify may read (a directory, an http(s) URL at a private "
            "address, or s3://BUCKET/PREFIX read with your AWS credentials); HOME/store is one already. "
            "Repeatable"
        ),
    ] = None,
) -> None:
    """A live web view of the ledger: rounds, accuracy, gas, nodes, reputation, blob verification. It reads
    only the chain and the blob store, so anyone with the deployment file can run it. Ctrl-C stops it."""
    require_extra("dashboard", "flchain dashboard")
    from fl_chain.dashboard.serve import DashboardServer, check_address
    from fl_chain.netaddr import is_loopback

    check_address(host, port, allow_remote)  # before the chain is even asked
    client = chain_from_options(home, deployment, rpc)
    beside = state_home(home) if deployment is None else None  # a server's home: its reports too
    console.print(f"flchain dashboard: reading the ledger on {client.deployment.rpc_url} ...")
    server = DashboardServer(client, host, port, home=beside, allow_remote=allow_remote, stores=store)
    if not is_loopback(host):
        err_console.print(
            Text.assemble(
                ("warning:", "yellow"),
                f" serving on {host}: anyone who can reach this address can read the "
                "dashboard (it is read-only; the ledger is public to the chain's users anyway)",
            )
        )
    with sigterm_as_interrupt():
        server.start()
        picture = server.sync.snapshot()
        console.print(
            f"{picture['event_count']} events, {len(picture['rounds'])} rounds, {len(picture['nodes'])} "
            f"nodes up to block {picture['chain']['head']}; open {server.url} (Ctrl-C stops)"
        )
        try:
            server.wait()
        finally:
            server.stop()
