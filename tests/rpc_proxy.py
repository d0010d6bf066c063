"""A TCP proxy in front of a chain node for fault tests: it can refuse and drop connections, delay
requests, and lose replies (the request reaches the node, its answer never comes back). It also counts
the JSON-RPC calls that pass (each call of a batch request counts), for scale tests and bench/scale.py.
Any TCP service works behind it: the S3 tests use it to cut an upload in the middle (`cut_after`)."""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

_METHOD = re.compile(rb'"method"\s*:\s*"([A-Za-z0-9_]+)"')


class RpcProxy:
    """Forwards 127.0.0.1:`port` (its own) to the node's port; faults are switched on by attributes."""

    def __init__(self, target_port: int, seed: int = 0) -> None:
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = threading.Event()  # cleared: every connection is dropped and new ones refused
        self.up.set()
        self.delay = 0.0  # seconds each request waits before it is forwarded
        self.reply_loss = 0.0  # probability that a reply is swallowed and its connection closed
        self.replies_lost = 0
        self.lost_methods: set[str] = set()  # JSON-RPC methods whose reply was swallowed at least once
        self.calls = 0  # JSON-RPC calls forwarded so far (a batch request counts each of its calls)
        self.by_method: Counter[str] = Counter()
        self.cut_after: int | None = None  # a connection that has sent more bytes is closed, on_cut() called
        self.on_cut: Callable[[], None] = lambda: None
        self.cuts = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        """The proxy's base URL (any HTTP service)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The proxy's JSON-RPC URL."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting connections."""
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if not self.up.is_set():
                conn.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the service behind is down: so is this connection
                conn.close()
                continue
            # what the connection last asked for, so a lost reply can be told apart by method
            asked: list[str] = [""]
            threading.Thread(target=self._pipe, args=(conn, upstream, True, asked), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, conn, False, asked), daemon=True).start()

    def _lose_this_reply(self, method: str) -> bool:
        with self._lock:
            lost = self._random.random() < self.reply_loss
            self.replies_lost += lost
            if lost:
                self.lost_methods.add(method)
            return lost

    def _pipe(self, a: socket.socket, b: socket.socket, request: bool, asked: list[str]) -> None:
        sent = 0
        try:
            while data := a.recv(65536):
                if not self.up.is_set():
                    break
                sent += len(data)
                if request and self.cut_after is not None and sent > self.cut_after:
                    self.cuts += 1
                    self.on_cut()
                    break
                if request:
                    if found := _METHOD.findall(data):
                        asked[0] = found[0].decode()
                        with self._lock:
                            self.calls += len(found)
                            self.by_method.update(m.decode() for m in found)
                    if self.delay:
                        time.sleep(self.delay)
                if not request and self._lose_this_reply(asked[0]):
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):  # shutdown, not only close: the peer must see the connection end now
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
