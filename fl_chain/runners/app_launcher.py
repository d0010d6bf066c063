"""The SuperExec of `flchain client`: the process that starts an app process for each message the node's
SuperNode hands out. Flower's own SuperExec (started by a SuperNode in its default `subprocess` isolation)
gives app processes the SuperNode's environment and tells nobody which process runs which bundle; the
node's SuperNode runs with `--isolation process` instead, and this thread of `flchain client` does the
SuperExec's job the way Flower's does (AcquireTask on the SuperNode's Runtime API, then
`flwr-clientapp --token ...`), with three differences:
- each app process gets an environment without the keystore password or key, plus the path of the
  node's signing agent (runners/signing_agent.py);
- the agent learns each app process's PID with the run and bundle hash the SuperNode gave for its task,
  so it answers only processes this node started, for their own run;
- with `--app-hash`, the app process is runners/app_process.py, Flower's flwr-clientapp that checks the
  bundle's hash before installing or loading any of it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from fl_chain import watchdog
from fl_chain.errors import FlchainError
from fl_chain.proctree import stop_tree
from fl_chain.runners.signing_agent import SigningAgent

POLL_INTERVAL = 0.5  # seconds between AcquireTask calls (Flower's SuperExec polls every second)


def pinned_app_hash(text: str) -> str:
    """`--app-hash`: 64 hex digits (the SHA-256 of the app's .fab, as `flwr build` writes it; lowercased),
    or "flchain": the hash of flchain's own app bundle, which holds only its pyproject.toml (the code is
    this installed fl_chain, so the node runs its own copy of flchain's ClientApp)."""
    if text == "flchain":
        from flwr.cli.build import build_fab_from_disk

        from fl_chain.runners.processes import APP_PYPROJECT

        with tempfile.TemporaryDirectory() as scratch:
            app = Path(scratch) / "app"  # the directory name flchain server bundles from
            app.mkdir()
            (app / "pyproject.toml").write_text(APP_PYPROJECT)
            return hashlib.sha256(build_fab_from_disk(app)).hexdigest()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text) is None:
        raise FlchainError(
            f"--app-hash {text[:80]!r}: expected 64 hex digits (sha256 of the app's .fab from `flwr build`) "
            "or 'flchain'"
        )
    return text.lower()


class AppLauncher:
    """Starts the app processes of one SuperNode (Runtime API at `runtime_address`) until stopped."""

    def __init__(
        self,
        runtime_address: str,
        agent: SigningAgent,
        log: Path,
        env: dict[str, str],
        app_hash: str | None = None,
    ) -> None:
        self.runtime_address = runtime_address
        self.agent = agent
        self.log = log
        self.env = env
        self.app_hash = app_hash
        self._procs: dict[int, subprocess.Popen] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Poll the SuperNode for tasks in a thread of this process."""
        self._thread = threading.Thread(target=self._loop, name="flchain-app-launcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, then stop every app process still running, by PID."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for pid, proc in list(self._procs.items()):
            with contextlib.suppress(Exception):
                stop_tree(pid, 5.0, kill_timeout=5.0, group=True)
            proc.poll()
            self._ended(pid)

    def _loop(self) -> None:
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
        from flwr.supercore.runtime import RuntimeHttpClient

        client = RuntimeHttpClient.from_server_address(
            server_address=self.runtime_address,
            insecure=True,  # loopback only: the SuperNode's Runtime API listens on 127.0.0.1
            root_certificates=None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
        )
        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        try:
            while not self._stopping.wait(POLL_INTERVAL):
                self._reap()
                try:
                    acquired = client.AcquireTask(request)
                except Exception:  # the SuperNode is starting or restarting: ask again on the next tick
                    continue
                if acquired.HasField("task") and acquired.token:
                    self._launch(acquired.token, int(acquired.task.run_id), str(acquired.task.fab_hash))
        finally:
            client.close()

    def _launch(self, token: str, run_id: int, fab_hash: str) -> None:
        """Start one app process for a task and register it with the agent."""
        pin = ["--flchain-app-hash", self.app_hash] if self.app_hash else []
        cmd = [sys.executable, "-m", "fl_chain.runners.app_process", *pin]
        cmd += ["--runtime-api-address", self.runtime_address, "--token", token, "--insecure"]
        cmd += ["--parent-pid", str(os.getpid())]  # Flower's own monitor: the app ends with this process
        with open(self.log, "ab") as fh:
            proc = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.agent.admit(proc.pid, run_id, fab_hash)
        watchdog.watch(proc.pid)
        self._procs[proc.pid] = proc

    def _reap(self) -> None:
        """Forget app processes that ended (their PIDs may be reused)."""
        for pid, proc in list(self._procs.items()):
            if proc.poll() is not None:
                self._ended(pid)

    def _ended(self, pid: int) -> None:
        self._procs.pop(pid, None)
        self.agent.forget(pid)
        watchdog.forget(pid)
