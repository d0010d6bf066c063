"""`flchain server`, `flchain client`: the federated-learning commands of a deployment (`flchain demo` is
cli_demo.py). Each declares its options and hands the work to one function (runners/server.py,
runners/node.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fl_chain.cli_common import (
    DeploymentOpt,
    HomeOpt,
    RpcOpt,
    console,
    deployment_path,
    err_console,
    read_password,
    sigterm_as_interrupt,
)
from fl_chain.config import RunConfig, load_config
from fl_chain.errors import FlchainError
from fl_chain.paths import state_home
from fl_chain.views import describe_event, print_entry, summary_table

if TYPE_CHECKING:
    from fl_chain.runners.node import NodeSupervisor
    from fl_chain.wire.node_config import NodeConfig


def config_with_overrides(config_path: Path | None, rounds: int | None) -> RunConfig:
    """The run configuration from a TOML file (or the defaults), with --rounds applied."""
    config = load_config(config_path)
    if rounds is not None:
        if rounds < 1:
            raise FlchainError(f"--rounds {rounds}: expected >= 1")
        config.federation.rounds = rounds
    return config


def server(
    config: Annotated[
        Path | None, typer.Option(help="TOML run configuration, e.g. configs/demo.toml (default: built-in)")
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Override federation.rounds")] = None,
    host: Annotated[str, typer.Option(help="Interface the SuperLink listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="SuperLink port (Fleet + Control API)")] = 9100,
    certificates: Annotated[
        Path | None, typer.Option(help="Directory with ca.crt, server.pem, server.key for TLS")
    ] = None,
    insecure: Annotated[bool, typer.Option(help="Allow plain HTTP on a non-loopback interface")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue a task from its last on-chain round (e.g. after a crash)")
    ] = False,
    task: Annotated[
        int | None, typer.Option(help="Task to resume (default: this coordinator's newest)")
    ] = None,
    home: HomeOpt = None,
    app: Annotated[
        Path | None,
        typer.Option(
            help="A Flower App directory whose ServerApp uses ChainStrategy (default: flchain's own)"
        ),
    ] = None,
) -> None:
    """Start a SuperLink, submit the flchain ServerApp (or --app's) and stream its progress until the run
    ends."""
    from fl_chain.runners.server import ServerOptions, ServerRun

    run_config = config_with_overrides(config, rounds)
    key = run_config.chain.coordinator_key
    options = ServerOptions(
        config=run_config,
        home=state_home(home),
        deployment=Path(run_config.chain.deployment)
        if run_config.chain.deployment
        else deployment_path(home, None),
        host=host,
        port=port,
        certificates=certificates,
        insecure=insecure,
        resume=resume,
        task=task,
        password=read_password(Path(key)) if key else None,
        app=app,
    )
    run = ServerRun(options).check()
    if run.resume_task is not None:
        console.print(
            f"resuming task {run.resume_task} after round {run.already} "
            f"(model 0x{run.resumed_hash.hex()[:12]}…, verified)"
        )
    if run.nothing_to_do:
        console.print(f"task {run.resume_task} already has {run.already} rounds: nothing to do")
        return
    with sigterm_as_interrupt():
        result = run.execute(print_entry, console.print)
    console.print(summary_table(result.reports, "rounds committed on-chain"))
    result.raise_for_failure()
    console.print(f"run complete; logs and reports in {result.run_dir}")


APP_HASH_HELP = (
    "Run only this app bundle: its FAB hash (64 hex digits: sha256 of `flwr build`'s .fab), or 'flchain' "
    "for flchain's own app; any other bundle is refused unrun"
)

POST_CLAIMS_HELP = (
    "Verified rounds: post this node's signed update claim on-chain (ModelLedger.postClaim, one small "
    "transaction per round, paid by this node) before replying, so omitting it is provable"
)


def open_node(node: NodeConfig, key: Path, superlink: str, home: Path | None) -> NodeSupervisor:
    """Decrypt the node's key in this process only. Before anything is started, the keystore password
    leaves this process's environment (and the kernel's copy of it in /proc) and the process becomes
    non-dumpable: no child inherits the password, no app process can read it or this process's memory."""
    from fl_chain.runners.node import NodeSupervisor
    from fl_chain.runners.processes import SECRET_ENV
    from fl_chain.runners.signing_agent import forget_secrets

    password = read_password(key)
    forget_secrets(SECRET_ENV)
    return NodeSupervisor.open(node, key, password, superlink, state_home(home))


def client(
    key: Annotated[Path, typer.Option(help="This node's keystore")],
    superlink: Annotated[str, typer.Option(help="SuperLink address HOST:PORT")] = "127.0.0.1:9100",
    task: Annotated[str, typer.Option(help="ML task: digits, or module:attr naming a TaskSpec")] = "digits",
    partition: Annotated[str, typer.Option(help="This node's partition of the task's data, i/n")] = "0/1",
    data: Annotated[
        Path | None, typer.Option(help="Own data file for the task (digits: .npz with x, y)")
    ] = None,
    partitioning: Annotated[str, typer.Option(help="iid | dirichlet | shards")] = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet alpha")] = 0.5,
    data_seed: Annotated[int, typer.Option(help="Seed of the partitioning (the same on every node)")] = 42,
    root_certificates: Annotated[Path | None, typer.Option(help="CA certificate of a TLS SuperLink")] = None,
    model_source: Annotated[str, typer.Option(help="message | store (fetch the committed blob)")] = "message",
    finalized_only: Annotated[
        bool, typer.Option(help="Train only from models finalized by the validator quorum")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Local port of this SuperNode's app API")] = None,
    app_hash: Annotated[str | None, typer.Option(help=APP_HASH_HELP)] = None,
    post_claims: Annotated[bool, typer.Option(help=POST_CLAIMS_HELP)] = False,
    home: HomeOpt = None,
    deployment: DeploymentOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Start a SuperNode running this node's ClientApp; runs until Ctrl-C."""
    import re

    from fl_chain.runners.app_launcher import pinned_app_hash
    from fl_chain.wire.node_config import NodeConfig, parse_partition

    if not re.fullmatch(r"[^:\s]+:\d+", superlink):
        raise FlchainError(f"--superlink {superlink!r}: expected HOST:PORT")
    pin = pinned_app_hash(app_hash) if app_hash is not None else None
    partition_id, partitions = parse_partition(partition)
    node = NodeConfig(
        deployment=deployment_path(home, deployment).resolve(),
        rpc=rpc,
        key_path=key.resolve(),
        partition_id=partition_id,
        num_partitions=partitions,
        partitioning=partitioning,
        alpha=alpha,
        data_seed=data_seed,
        data_path=data.resolve() if data else None,
        task=task,
        model_source=model_source,
        finalized_only=finalized_only,
        post_claims=post_claims,
    ).validate()
    supervisor = open_node(node, key, superlink, home)
    supervisor.root_certificates, supervisor.port, supervisor.app_hash = root_certificates, port, pin
    _serve_node(supervisor)


def _serve_node(supervisor: NodeSupervisor) -> None:
    """Warn about a node the server will refuse, then supervise it until Ctrl-C or SIGTERM."""
    if supervisor.status != "Active":
        err_console.print(
            f"warning: {supervisor.address} is {_status_words(supervisor.status)}; the server will "
            "refuse this node until a registrar approves it"
        )
    with sigterm_as_interrupt():
        supervisor.serve(
            lambda e: console.print("chain: " + describe_event(e), highlight=False),
            console.print,
            err_console.print,
        )


def _status_words(status: str) -> str:
    """A node's registry status as a phrase (status "None" means it never registered)."""
    if status == "None":
        return "not registered in the NodeRegistry (`flchain node apply`)"
    return f"{status} in the NodeRegistry"
