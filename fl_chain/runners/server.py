"""ServerRun: what `flchain server` does. Checks everything it can before starting anything (chain,
coordinator key, task, resume point, TLS files, port), starts a SuperLink, submits the flchain app with
`flwr run`, follows the ServerApp's run events (wire/report.py: the only channel between the two
processes) and stops both by PID, also on failure and Ctrl-C."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fl_chain.chain import ledger
from fl_chain.chain.identity import resolve_account
from fl_chain.chain.setup.localnode import port_in_use
from fl_chain.config import RunConfig
from fl_chain.coordinator.key_handoff import discard_password, hand_over_password
from fl_chain.coordinator.ledger_session import RUN_ENV
from fl_chain.errors import FlchainError
from fl_chain.netaddr import is_loopback
from fl_chain.proctree import cmdline, descendants
from fl_chain.runners.fleet_proxy import nginx_binary
from fl_chain.runners.processes import (
    Managed,
    SuperLink,
    check_app_dir,
    check_certificates,
    prepare_app,
    start_superlink,
    submit_run,
)
from fl_chain.tasks import load_task
from fl_chain.wire.report import RoundReport, RunEnd, RunEntry, RunEventsReader
from fl_chain.wire.run_spec import RunSpec

SERVERAPP_GONE_GRACE = 8.0  # seconds `flwr run` gets to end by itself once the ServerApp process is gone


@dataclass(frozen=True)
class ServerOptions:
    """What the user chose for a `flchain server` run."""

    config: RunConfig
    home: Path
    deployment: Path
    host: str = "127.0.0.1"
    port: int = 9100
    certificates: Path | None = None
    insecure: bool = False
    resume: bool = False
    task: int | None = None
    password: str | None = None  # of the coordinator keystore; handed to the ServerApp as a 0600 file
    app: Path | None = None  # a Flower App directory whose ServerApp uses ChainStrategy (else flchain's own)


@dataclass
class RunResult:
    """How a run ended."""

    reports: list[RoundReport]
    expected: int | None  # None: the app decides how many rounds it runs
    run_dir: Path
    end: RunEnd | None = None
    log_tail: str = ""

    def raise_for_failure(self) -> None:
        """A one-line error unless every expected round was committed and the run ended cleanly."""
        if self.end is not None and self.end.ok and self.expected in (None, len(self.reports)):
            return
        why = (
            self.end.error
            if self.end is not None and self.end.error
            else self.log_tail or "no ServerApp output"
        )
        of = f" of {self.expected} expected" if self.expected is not None else ""
        raise FlchainError(
            f"the run failed: {len(self.reports)}{of} rounds committed: {why} (logs in {self.run_dir})"
        )


@dataclass
class ServerRun:
    """One `flchain server` run (see the module docstring)."""

    options: ServerOptions
    coordinator: str = ""
    resume_task: int | None = None
    already: int = 0  # rounds after round 0 already on-chain (resume)
    resumed_hash: bytes = b""
    _processes: list[Managed | SuperLink] = field(default_factory=list)

    @property
    def connect_address(self) -> str:
        """HOST:PORT that nodes on this machine connect to."""
        host = self.options.host
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.options.port}"

    @property
    def expected_rounds(self) -> int | None:
        """Round reports this run will emit (round 0 only for a new task); None for a user's app."""
        if self.options.app is not None:
            return None
        return self.options.config.federation.rounds - self.already + (0 if self.resume_task else 1)

    def check(self) -> ServerRun:
        """Fail fast, before anything starts: network exposure, TLS files, chain, key, task, resume point."""
        from fl_chain.chain.client import open_chain
        from fl_chain.coordinator.server_app import resume_point
        from fl_chain.store import is_s3
        from fl_chain.store_read import allow_local_store, use_s3_endpoint

        opts = self.options
        if opts.certificates is None and not opts.insecure and not is_loopback(opts.host):
            raise FlchainError(
                f"--host {opts.host} is not loopback: pass --certificates DIR for TLS, or --insecure"
            )
        if opts.certificates is not None:
            check_certificates(opts.certificates)
        if not is_loopback(opts.host):
            nginx_binary()  # a public address passes only Flower's Fleet API (runners/fleet_proxy.py)
        if opts.task is not None and not opts.resume:
            raise FlchainError("--task is only used with --resume")
        if opts.app is not None:
            check_app_dir(opts.app)
            if opts.resume:
                raise FlchainError("--resume works with flchain's own app only, not with --app")
        client = open_chain(opts.deployment, opts.config.chain.rpc or None)
        key = Path(opts.config.chain.coordinator_key) if opts.config.chain.coordinator_key else None
        coordinator = resolve_account(client.deployment.dev_keys, "coordinator", key, opts.password)
        self.coordinator = coordinator.address
        if opts.app is None:
            load_task(opts.config.task.name)
        if opts.resume:
            self.resume_task = (
                opts.task if opts.task is not None else ledger.newest_owned_task(client, coordinator.address)
            )
            store = opts.config.store.dir or opts.home / "store"
            if is_s3(store):
                use_s3_endpoint(opts.config.store.endpoint_url or None)
            else:
                allow_local_store(store)  # the run's own store: its file:// blobs are this machine's
            record, _ = resume_point(client, coordinator, self.resume_task)  # fetched and verified now
            self.already, self.resumed_hash = record.round, record.model_hash
        if port_in_use(opts.port, opts.host):
            raise FlchainError(
                f"port {opts.port} on {opts.host} is already in use: choose another with --port"
            )
        return self

    @property
    def nothing_to_do(self) -> bool:
        """A resumed task that already has every configured round."""
        return self.resume_task is not None and self.already >= self.options.config.federation.rounds

    def execute(self, on_entry: Callable[[RunEntry], None], on_started: Callable[[str], None]) -> RunResult:
        """Start the SuperLink, submit the run, hand every run event to `on_entry` until the run ends;
        everything started is stopped again whatever happens."""
        opts = self.options
        run_dir = opts.home / "runs" / time.strftime("%Y%m%d-%H%M%S")
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = self._spec(run_dir)
        spec.write(run_dir / "run.json")
        # The coordinator's keystore password reaches the ServerApp as a 0600 file it reads once and
        # deletes (coordinator/key_handoff.py), never through an environment.
        password_file = run_dir / "coordinator.password"
        env = hand_over_password(password_file, opts.password) if opts.password is not None else {}
        if opts.app is not None:  # the user's ServerApp finds its LedgerSession through the environment
            env[RUN_ENV] = str(run_dir / "run.json")
        try:
            link = start_superlink(opts.host, opts.port, run_dir / "superlink.log", opts.certificates, env)
            self._processes.append(link)
            only = "" if link.proxy is None else f" (Fleet API only; runs are submitted on {link.local})"
            on_started(
                f"SuperLink on {opts.host}:{opts.port}{only} (pid {link.pid}); coordinator "
                f"{self.coordinator}; connect nodes with: flchain client --superlink {self.connect_address} "
                "--key KEY"
            )
            # `flwr run` talks to the Control API, which only the SuperLink's local address serves.
            app_dir, flwr_home = prepare_app(run_dir, link.local, link.local_certificates)
            if opts.app is not None:
                app_dir = opts.app.resolve()
            run_file = run_dir / "run.json" if opts.app is None else None  # a user's app has no such key
            runner = submit_run(app_dir, flwr_home, run_file, run_dir / "serverapp.log")
            self._processes.append(runner)
            return self._follow(runner, spec.events, run_dir, on_entry, link.pid)
        finally:
            self.stop()
            discard_password(password_file)

    def stop(self) -> None:
        """Stop every process this run started, newest first, by PID."""
        while self._processes:
            self._processes.pop().stop()

    def _spec(self, run_dir: Path) -> RunSpec:
        config = self.options.config
        config.chain.deployment = str(self.options.deployment.resolve())
        if not config.store.dir:
            config.store.dir = str(self.options.home / "store")
        return RunSpec(config, self.options.home, run_dir / "rounds.jsonl", self.resume_task)

    def _follow(
        self,
        runner: Managed,
        events: Path,
        run_dir: Path,
        on_entry: Callable[[RunEntry], None],
        superlink_pid: int,
    ) -> RunResult:
        result = RunResult([], self.expected_rounds, run_dir)
        reader = RunEventsReader(events)
        app_seen = False
        app_gone_at: float | None = None
        while result.end is None:
            finished = runner.proc.poll() is not None
            _drain(reader, result, on_entry)
            if finished:
                break
            # A killed ServerApp is noticed by the SuperLink only when its heartbeats expire (about a
            # minute), and `flwr run --stream` streams on until then: once the app's process is gone,
            # `flwr run` gets a few seconds to end by itself (a finished run does), then we stop waiting.
            if serverapp_running(superlink_pid):
                app_seen, app_gone_at = True, None
            elif app_seen:
                app_gone_at = app_gone_at or time.monotonic()
                if time.monotonic() - app_gone_at > SERVERAPP_GONE_GRACE:
                    break
            time.sleep(0.3)
        if result.end is None:  # `flwr run` ended first: give the app's last lines a moment to land
            time.sleep(1.0)
            _drain(reader, result, on_entry)
        if result.end is None:  # the app process died without a word: its log is all there is
            result.log_tail = last_error_line(run_dir / "serverapp.log")
        return result


def serverapp_running(superlink_pid: int) -> bool:
    """True while a `flwr-serverapp` process runs under the SuperLink (its SuperExec starts one per run)."""
    return any("flwr-serverapp" in cmdline(pid) for pid in descendants(superlink_pid))


def _drain(reader: RunEventsReader, result: RunResult, on_entry: Callable[[RunEntry], None]) -> None:
    for entry in reader.new_entries():
        if isinstance(entry, RunEnd):
            result.end = entry
            continue
        if isinstance(entry, RoundReport):
            result.reports.append(entry)
        on_entry(entry)


def last_error_line(log: Path) -> str:
    """The last line of a log that looks like an error (or its last line), for a one-line diagnosis."""
    import re

    if not log.exists():
        return ""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in log.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    errors = [ln for ln in lines if "error" in ln.lower()]
    if errors:
        return errors[-1][:300]
    # No error was logged: the app process was killed or died without a word.
    return "the ServerApp stopped without reporting an error (killed?)" + (
        f"; its last log line: {lines[-1][:200]}" if lines else ""
    )
