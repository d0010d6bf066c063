"""Read-only HTTP server for a ModelStore directory, so clients on other machines can fetch blobs.

Serves only GET/HEAD of `/<64 hex digits>` (model blobs), `/rounds/<document name>` (verified rounds'
manifests, outcome and checkpoint leaves) and `/rounds/rules-<64 hex digits>.json` (a task's rules) that
exist in the directory: no listing, no other paths. Node update blobs (`updates/`) are
never served: they are for the validators only.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_BLOB = re.compile(
    r"^/([0-9a-f]{64}|rounds/t[0-9]+-r[0-9]+-[0-9a-f]{64}\.json|rounds/rules-[0-9a-f]{64}\.json)$"
)


def _handler(directory: Path) -> type[BaseHTTPRequestHandler]:
    class BlobHandler(BaseHTTPRequestHandler):
        def _blob(self) -> Path | None:
            match = _BLOB.match(self.path)
            if not match:
                return None
            path = directory / match.group(1)
            return path if path.is_file() else None

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def _respond(self, send_body: bool) -> None:
            path = self._blob()
            if path is None:
                self.send_error(404, "not found")
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    return BlobHandler


class BlobServer:
    """A background HTTP server for one store directory."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer((host, port), _handler(directory))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self.httpd.server_address[1])

    def start(self) -> BlobServer:
        """Start serving in a daemon thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
