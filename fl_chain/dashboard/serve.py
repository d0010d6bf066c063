"""Serve the dashboard: check the address, start the ledger sync, run uvicorn in a thread so the
caller (the `flchain dashboard` command or `flchain demo --dashboard`) keeps control, stop both."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from fl_chain.chain.client import ChainClient
from fl_chain.dashboard.app import make_app, missing_vendor_files
from fl_chain.dashboard.sync import LedgerSync
from fl_chain.dashboard.verify import dashboard_policy
from fl_chain.errors import FlchainError
from fl_chain.netaddr import is_loopback


def check_address(host: str, port: int, allow_remote: bool) -> None:
    """A one-line error for a non-loopback host without consent, or an address that is taken."""
    if not is_loopback(host) and not allow_remote:
        raise FlchainError(
            f"--host {host} is not a loopback address: the dashboard would be open to other machines; "
            "pass --allow-remote if that is intended"
        )
    if not 0 <= port <= 65535:
        raise FlchainError(f"--port {port}: expected 0-65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise FlchainError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror}") from None


class DashboardServer:
    """The dashboard over one chain, served from a background thread; `home` is a server's or demo's
    state directory beside it (its run reports add accuracy, its HOME/store is read by verify), if any;
    `stores`: more stores of this operator that verify may read (directories, or http(s) URLs at a
    private address)."""

    def __init__(
        self,
        client: ChainClient,
        host: str = "127.0.0.1",
        port: int = 8600,
        home: Path | None = None,
        allow_remote: bool = False,
        stores: list[str] | None = None,
    ) -> None:
        check_address(host, port, allow_remote)
        self.reads = dashboard_policy([*([home / "store"] if home is not None else []), *(stores or [])])
        missing = missing_vendor_files()
        if missing:
            raise FlchainError(
                f"the dashboard's chart library is not installed ({', '.join(missing)} missing under "
                "fl_chain/dashboard/static): run `make setup`"
            )
        self.host, self.port, self.allow_remote = host, port, allow_remote
        self.sync = LedgerSync(client, home)
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the page is."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else host}:{self.port}/"

    def start(self, timeout: float = 15.0) -> DashboardServer:
        """Read the ledger once, then serve; returns once the port accepts connections."""
        import uvicorn

        self.sync.start()
        hosts = ["*"] if self.allow_remote else ["127.0.0.1", "localhost", "[::1]", "::1", self.host]
        config = uvicorn.Config(
            make_app(self.sync, hosts, self.reads),
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="dashboard-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.sync.stop()
                raise FlchainError(f"the dashboard did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        if self.port == 0:  # an OS-chosen port: read back which
            self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C in the caller ends the wait)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def stop(self) -> None:
        """Stop serving and polling."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sync.stop()
