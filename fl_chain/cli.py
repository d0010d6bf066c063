"""The `flchain` command line: one typer app, errors shown as one line with a non-zero exit."""

from __future__ import annotations

import os
import sys
import traceback

import click
import requests
import typer
from rich.text import Text

from fl_chain import cli_chain, cli_dashboard, cli_demo, cli_fl, cli_ledger, cli_node, cli_store
from fl_chain.cli_common import err_console
from fl_chain.errors import FlchainError

app = typer.Typer(
    help="Federated learning on Flower with on-chain accounting on Ethereum.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(cli_chain.app, name="chain")
app.add_typer(cli_node.app, name="node")
app.add_typer(cli_store.app, name="store")
app.command("server")(cli_fl.server)
app.command("client")(cli_fl.client)
app.command("demo")(cli_demo.demo)
app.command("status")(cli_ledger.status)
app.command("audit")(cli_ledger.audit)
app.command("watch")(cli_ledger.watch)
app.command("pull")(cli_ledger.pull)
app.command("validator")(cli_ledger.validator)
app.command("settle")(cli_ledger.settle)
app.command("dashboard")(cli_dashboard.dashboard)


def run(args: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; every known failure becomes one line on stderr."""
    try:
        result = app(args=args, standalone_mode=False, prog_name="flchain")
        return result if isinstance(result, int) else 0
    except FlchainError as exc:
        err_console.print(Text.assemble(("error:", "red"), f" {exc}"), highlight=False, soft_wrap=True)
        return 1
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except requests.ConnectionError as exc:
        err_console.print(
            Text.assemble(
                ("error:", "red"),
                f" lost the connection to the Ethereum node ({exc.request and exc.request.url})",
            )
        )
        return 1
    except Exception as exc:  # last resort: never a traceback unless asked for
        if os.environ.get("FLCHAIN_DEBUG"):
            traceback.print_exc()
        err_console.print(
            Text.assemble(
                ("internal error:", "red"),
                f" {type(exc).__name__}: {exc} (set FLCHAIN_DEBUG=1 for a traceback)",
            ),
            highlight=False,
            soft_wrap=True,
        )
        return 1


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
