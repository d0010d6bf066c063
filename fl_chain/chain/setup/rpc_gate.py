"""The RPC gate: the only face a local chain shows to other machines.

anvil and ganache answer their test-only methods to anyone who reaches them: `anvil_impersonateAccount`
and `anvil_setStorageAt` let a caller act as the admin or rewrite any contract, `anvil_reset` wipes
the chain. Neither can switch them off. So a chain started for other machines (`flchain chain up --host
0.0.0.0`) listens on loopback only, and this small JSON-RPC proxy (Starlette, uvicorn and aiohttp)
listens on the public address and forwards only the standard methods a node and a coordinator use:
reads, gas estimates, filters and already signed transactions. Everything else, single or in a batch,
is refused with a JSON-RPC error and never reaches the chain.

Run as `python -m fl_chain.chain.setup.rpc_gate --host H --port P --upstream URL`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fl_chain.extras import require_extra

# The standard (EIP-1474 and web3) methods a node, a validator, the dashboard and the coordinator need.
# No eth_sendTransaction / eth_sign (the chain's unlocked development accounts would sign them), no
# personal_, debug_, anvil_, evm_, hardhat_, miner_ or txpool_ method.
ALLOWED_METHODS = frozenset(
    {
        "web3_clientVersion",
        "net_version",
        "net_listening",
        "eth_chainId",
        "eth_syncing",
        "eth_blockNumber",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_blobBaseFee",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockTransactionCountByNumber",
        "eth_getBlockTransactionCountByHash",
        "eth_getBlockReceipts",
        "eth_getTransactionByHash",
        "eth_getTransactionByBlockNumberAndIndex",
        "eth_getTransactionByBlockHashAndIndex",
        "eth_getTransactionReceipt",
        "eth_getLogs",
        "eth_newFilter",
        "eth_newBlockFilter",
        "eth_getFilterChanges",
        "eth_getFilterLogs",
        "eth_uninstallFilter",
        "eth_call",
        "eth_estimateGas",
        "eth_createAccessList",
        "eth_sendRawTransaction",
    }
)
MAX_BODY = 4 * 1024 * 1024  # bytes of one request (anvil's own default limit is 2 MB)
METHOD_NOT_FOUND = -32601


def _refusal(call: Any, allowed: bool) -> dict[str, Any]:
    """The JSON-RPC error answering a call the gate does not forward."""
    method = call.get("method") if isinstance(call, dict) else None
    ident = call.get("id") if isinstance(call, dict) else None
    message = f"method {method!r} is not served on this address (flchain RPC gate)"
    if allowed:
        message = "not sent: its batch holds a method this address does not serve (flchain RPC gate)"
    return {"jsonrpc": "2.0", "id": ident, "error": {"code": METHOD_NOT_FOUND, "message": message}}


def refused_calls(payload: Any) -> list[dict[str, Any]] | None:
    """Errors for every call of a request if any of its calls is not allowed (a batch is forwarded
    whole or not at all), else None."""
    calls = payload if isinstance(payload, list) else [payload]
    allowed = [isinstance(c, dict) and c.get("method") in ALLOWED_METHODS for c in calls]
    if calls and all(allowed):
        return None
    return [_refusal(c, ok) for c, ok in zip(calls, allowed, strict=True)] or [_refusal(None, False)]


def make_gate(upstream: str, max_body: int = MAX_BODY) -> Any:
    """The Starlette app forwarding allowed JSON-RPC calls (POST /) to `upstream`."""
    import aiohttp
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    session: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        session["http"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        yield
        await session["http"].close()

    async def forward(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return JSONResponse({"error": f"request larger than {max_body} bytes"}, status_code=413)
        try:
            payload = json.loads(body)
        except ValueError:
            error = {"code": -32700, "message": "parse error"}
            return JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=400)
        refused = refused_calls(payload)
        if refused is not None:
            return JSONResponse(refused if isinstance(payload, list) else refused[0])
        headers = {"Content-Type": "application/json"}
        async with session["http"].post(upstream, data=bytes(body), headers=headers) as reply:
            content = await reply.read()
            return Response(content, status_code=reply.status, media_type="application/json")

    return Starlette(routes=[Route("/", forward, methods=["POST"])], lifespan=lifespan)


def start_gate(host: str, port: int, upstream: str, log_path: Path, detach: bool) -> int:
    """Start the gate as a subprocess on host:port in front of `upstream` and return its PID (the caller
    waits until it answers and stops it by that PID). A detached gate gets its own session so the
    shell's Ctrl-C does not reach it."""
    require_extra("dashboard", "the RPC gate in front of a chain other machines reach")
    cmd = [sys.executable, "-m", "fl_chain.chain.setup.rpc_gate", "--host", host, "--port", str(port)]
    cmd += ["--upstream", upstream]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=detach
        )
    return proc.pid


def main(argv: list[str] | None = None) -> None:
    """Serve the gate until terminated."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args(argv)
    uvicorn.run(make_gate(args.upstream), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
