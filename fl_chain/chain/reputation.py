"""Reputation contract reads: each node's trust value (fixed point, see `fixedpoint.SCALE`)."""

from __future__ import annotations

from collections.abc import Iterable

from web3 import Web3

from fl_chain.chain.client import ChainClient


def reputation_of(client: ChainClient, address: str) -> int:
    """A node's reputation in fixed point."""
    return int(client.call(client.reputation.functions.reputationOf(Web3.to_checksum_address(address))))


def updates_of(client: ChainClient, address: str) -> int:
    """How many scored rounds a node's reputation has folded in."""
    return int(client.call(client.reputation.functions.updatesOf(Web3.to_checksum_address(address))))


def reputations(client: ChainClient, addresses: Iterable[str]) -> dict[str, int]:
    """Reputation (fixed point) of each address, read in one batch request."""
    addresses = list(addresses)
    fn = client.reputation.functions.reputationOf
    values = client.call_many([fn(Web3.to_checksum_address(a)) for a in addresses])
    return {a: int(v) for a, v in zip(addresses, values, strict=True)}
