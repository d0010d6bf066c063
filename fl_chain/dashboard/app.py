"""The dashboard's web app (Starlette): the page, its static files, the ledger as JSON, a server-sent
event stream that announces every new picture, and blob verification. Every route is read-only; the one
that makes the dashboard fetch something (verify) is a POST only the dashboard's own page can send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fl_chain.dashboard.sync import LedgerSync
from fl_chain.dashboard.verify import dashboard_policy, verify_round
from fl_chain.store_read import ReadPolicy

STATIC = Path(__file__).resolve().parent / "static"
VENDOR_FILES = ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css")
HEARTBEAT_SECONDS = 15.0
VERIFY_PATIENCE = 10.0  # seconds a verification waits for a chain node that is away
VERIFY_HEADER = "x-flchain-verify"  # a header no cross-site form can set, and fetch only after a preflight
# Chain data is attacker-controlled: the page renders it as text, and this policy forbids any script or
# style the page did not ship, so a string that slipped into HTML still could not run.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"]] + [
                    (k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def missing_vendor_files() -> list[str]:
    """Bundled front-end files that are not in the package (`make setup` copies them from npm)."""
    return [name for name in VENDOR_FILES if not (STATIC / name).is_file()]


def cross_site(request: Request) -> str | None:
    """Why a request that makes the dashboard act did not come from the dashboard's own page, or None:
    another Origin, a browser saying it is not same-origin, or no VERIFY_HEADER (which a page elsewhere
    cannot add without a CORS preflight, and the dashboard answers none)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        return f"origin {origin} is not this dashboard"
    site = request.headers.get("sec-fetch-site")
    if site not in (None, "same-origin"):
        return f"a {site} request"
    if request.headers.get(VERIFY_HEADER) != "1":
        return f"no {VERIFY_HEADER} header"
    return None


def verify_route(sync: LedgerSync, reads: ReadPolicy) -> Callable[[Request], Awaitable[Response]]:
    """POST /api/verify/{task}/{round}: re-hash a round's blob (`verify_round` under `reads`), for the
    dashboard's own page only (`cross_site`)."""
    # Its own connection, patient for seconds, not minutes: a click on verify while the chain is away
    # answers "unavailable" soon instead of hanging a request for the shared client's 300 s.
    verifier = sync.client.with_patience(VERIFY_PATIENCE, report=lambda message: None)

    async def verify(request: Request) -> Response:
        refused = cross_site(request)
        if refused is not None:
            return JSONResponse({"status": "unavailable", "detail": f"refused: {refused}"}, 403)
        try:
            task, round_number = int(request.path_params["task"]), int(request.path_params["round"])
        except ValueError:
            return JSONResponse({"status": "unavailable", "detail": "task and round are numbers"}, 400)
        result = await asyncio.to_thread(verify_round, verifier, task, round_number, reads)
        return JSONResponse(result, headers={"cache-control": "no-store"})

    return verify


def make_app(sync: LedgerSync, allowed_hosts: list[str], reads: ReadPolicy | None = None) -> Starlette:
    """The dashboard app over a running LedgerSync; requests naming another host are refused (a web
    page elsewhere cannot reach the dashboard through DNS rebinding). `reads`: what verify may fetch
    (`dashboard_policy`; default: public http(s) only)."""
    verify = verify_route(sync, reads or dashboard_policy([]))

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def ledger(request: Request) -> Response:
        return JSONResponse(sync.snapshot(), headers={"cache-control": "no-store"})

    async def stream(request: Request) -> Response:
        async def announcements() -> AsyncIterator[str]:
            seen = -1
            quiet = 0.0
            while not await request.is_disconnected():
                version = sync.version
                if version != seen:
                    seen = version
                    quiet = 0.0
                    yield f"event: ledger\ndata: {json.dumps({'version': version})}\n\n"
                elif quiet >= HEARTBEAT_SECONDS:
                    quiet = 0.0
                    yield ": heartbeat\n\n"
                await asyncio.sleep(0.1)
                quiet += 0.1

        return StreamingResponse(
            announcements(), media_type="text/event-stream", headers={"cache-control": "no-store"}
        )

    routes = [
        Route("/", index),
        Route("/api/ledger", ledger),
        Route("/api/stream", stream),
        Route("/api/verify/{task}/{round}", verify, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts),
            Middleware(SecurityHeaders),
        ],
    )
