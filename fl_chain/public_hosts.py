"""Only public hosts, for a reader that fetches on someone else's behalf (the dashboard, `ReadPolicy.
public_only` in store_read.py): a URI whose host is, or resolves to, a loopback, private or link-local
address is refused unless it is trusted, and the HTTP client's resolver drops such addresses again at
connect time, so a name that resolved to a public address for the check cannot be rebound to a private
one (DNS rebinding)."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from fl_chain.errors import FlchainError
from fl_chain.netaddr import address_kind


def non_public(uri: str, what: str, trusted: tuple[str, ...]) -> str | None:
    """Why the URI's host may not be fetched (it is, or resolves to, a non-public address and is not one
    of the `trusted` host:port), or None; a one-line FlchainError if it does not resolve."""
    parsed = urlparse(uri)
    try:
        host, port = (parsed.hostname or "").lower(), parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return f"{what} {uri}: not a valid URL"
    if f"{host}:{port}" in trusted:
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError) as exc:
        raise FlchainError(f"cannot read {what} {uri}: cannot resolve {host!r} ({exc})") from None
    for address in sorted(addresses):
        kind = address_kind(address)
        if kind is not None:
            named = host if host.strip("[]") == address else f"{host} ({address})"
            return f"{what} {uri}: {named} is a {kind} address; not fetched"
    return None


class PublicClient:
    """An aiohttp session factory whose resolver drops non-public addresses of untrusted hosts: a name
    that resolved to a public address for the check above cannot resolve to a private one at connect."""

    def __init__(self, trusted: tuple[str, ...]) -> None:
        self.trusted = trusted

    async def __call__(self, **kwargs):
        import aiohttp

        connector = aiohttp.TCPConnector(resolver=PublicResolver(self.trusted))
        return aiohttp.ClientSession(connector=connector, **kwargs)


class PublicResolver:
    """aiohttp's threaded resolver, filtered to public addresses (see PublicClient)."""

    def __init__(self, trusted: tuple[str, ...]) -> None:
        import aiohttp

        self.inner, self.trusted = aiohttp.ThreadedResolver(), trusted

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        """The public addresses of `host` (all of them for a trusted host:port)."""
        found = await self.inner.resolve(host, port, family)
        if f"{host.lower()}:{port}" in self.trusted:
            return found
        public = [r for r in found if address_kind(r["host"]) is None]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self.inner.close()
