"""Facts about network addresses that every layer may ask (a base module: it imports nothing of flchain)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True if `host` (localhost, 127.0.0.0/8, ::1) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_kind(address: str) -> str | None:
    """'loopback', 'link-local', 'private' (any other non-global range) for such an IP, None if public."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    return None if ip.is_global else "private"
