"""A web3 HTTP provider that outlasts a chain node's restart: when the node stops answering, every
request waits with exponential backoff (a visible message when the wait starts and when the node is
back) instead of failing the round, up to a patience limit that ends in a one-line error.

web3's own retry (`ExceptionRetryConfiguration`) covers blips of a few hundred milliseconds and only
read methods; a node restart takes seconds, and a signed transaction is safe to send again (same hash:
the node answers "already known" or "nonce too low", which `ChainClient.send_signed` reconciles), so
every method is retried here."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import requests
from web3 import HTTPProvider
from web3._utils.http_session_manager import HTTPSessionManager

from fl_chain.errors import FlchainError
from fl_chain.interrupts import raise_if_stopping

DEFAULT_PATIENCE = 300.0  # seconds a chain node may be away before the command gives up
FIRST_WAIT = 0.25
LONGEST_WAIT = 5.0
REPORT_AFTER = 1.0  # seconds away before the operator is told (single lost answers are not)
_UNREACHABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class ChainUnreachable(FlchainError):
    """The chain node did not answer within the provider's patience."""


def print_to_stderr(message: str) -> None:
    """Default outage reporter for commands: one line on stderr."""
    print(f"flchain: {message}", file=sys.stderr, flush=True)


class _PatientSession(HTTPSessionManager):
    """web3's session manager whose POSTs wait out an unreachable node (single and batch requests)."""

    def __init__(self, provider: PatientHTTPProvider) -> None:
        super().__init__()
        self._provider = provider

    def make_post_request(self, endpoint_uri: Any, data: bytes | dict[str, Any], **kwargs: Any) -> bytes:
        """POST, retrying with backoff while the node cannot be reached."""
        away_since: float | None = None
        reported = False
        wait = FIRST_WAIT
        while True:
            try:
                reply = super().make_post_request(endpoint_uri, data, **kwargs)
            except _UNREACHABLE as exc:
                if self._provider.patience <= 0:
                    raise
                now = time.monotonic()
                away_since = now if away_since is None else away_since
                if not reported and now - away_since >= REPORT_AFTER:  # a lost answer is no news
                    reported = True
                    self._provider.report(
                        f"the chain node at {endpoint_uri} is not answering ({type(exc).__name__}); "
                        f"waiting for it, up to {self._provider.patience:.0f} s"
                    )
                if now - away_since + wait > self._provider.patience:
                    raise ChainUnreachable(
                        f"the chain node at {endpoint_uri} has not answered for "
                        f"{now - away_since:.0f} s; gave up (is it running?)"
                    ) from None
                time.sleep(wait)
                raise_if_stopping()
                wait = min(wait * 2, LONGEST_WAIT)
                continue
            if reported and away_since is not None:
                self._provider.report(
                    f"the chain node at {endpoint_uri} answers again after "
                    f"{time.monotonic() - away_since:.1f} s; continuing"
                )
            return reply


class PatientHTTPProvider(HTTPProvider):
    """HTTPProvider that waits out a node that went away (see the module docstring)."""

    def __init__(
        self,
        endpoint_uri: str,
        request_kwargs: dict[str, Any] | None = None,
        patience: float = DEFAULT_PATIENCE,
        report: Callable[[str], None] = print_to_stderr,
    ) -> None:
        super().__init__(endpoint_uri, request_kwargs=request_kwargs, exception_retry_configuration=None)
        self.patience = patience
        self.report = report
        self.request_kwargs = request_kwargs or {}
        self._request_session_manager = _PatientSession(self)
