"""`flchain store …`: commands on a model store (a directory or an s3:// bucket)."""

from __future__ import annotations

from typing import Annotated

import typer

from fl_chain.cli_common import console
from fl_chain.errors import FlchainError

app = typer.Typer(
    help="Copy or mirror a model store (a directory or s3://BUCKET/PREFIX).", no_args_is_help=True
)


def sync(
    src: Annotated[str, typer.Argument(help="Store to copy from: a directory or s3://BUCKET/PREFIX")],
    dst: Annotated[str, typer.Argument(help="Store to copy to: a directory or s3://BUCKET/PREFIX")],
    updates: Annotated[
        bool, typer.Option(help="Copy the private update blobs too (for a validators' mirror)")
    ] = False,
    endpoint_url: Annotated[
        str | None, typer.Option(help="An S3-compatible service that is not AWS (else AWS_ENDPOINT_URL)")
    ] = None,
) -> None:
    """Copy a store's models and published documents (and with --updates its update blobs) to another
    store, each verified against the hash its name carries; exits 1 if any object was refused."""
    from fl_chain.store_sync import sync_stores

    result = sync_stores(src, dst, updates, endpoint_url)
    copied = result.copied
    console.print(
        f"{src} -> {dst}: {copied['model']} models, {copied['document']} documents, "
        f"{copied['update']} update blobs copied, every hash verified; {len(result.skipped)} left alone"
        + ("" if updates else " (update blobs stay private: --updates to copy them)"),
        highlight=False,
    )
    if result.refused:
        raise FlchainError(f"{len(result.refused)} objects refused: " + "; ".join(result.refused))


app.command("sync")(sync)
