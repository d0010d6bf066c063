"""Proof of work for open registration: find a nonce with
keccak256(abi.encode(chain id, registry, node, nonce)) < target, as NodeRegistry.registerWithWork checks.

The expected number of hashes is 2^256 / target (the "difficulty"). Mining is plain Python keccak
(~0.1-0.3 M hashes/s per core here); that is the point: the cost of an identity is CPU time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from eth_abi import encode
from eth_hash.auto import keccak

MAX_UINT = 2**256


def target_for(difficulty: int) -> int:
    """The target whose expected number of hashes is `difficulty`."""
    if difficulty < 1:
        raise ValueError("difficulty must be >= 1")
    return MAX_UINT // difficulty


def difficulty_of(target: int) -> float:
    """Expected hashes to find a proof under `target`."""
    return MAX_UINT / max(target, 1)


def work_hash(chain_id: int, registry: str, node: str, nonce: int) -> bytes:
    """The hash the registry computes for a nonce."""
    return keccak(encode(["uint256", "address", "address", "uint256"], [chain_id, registry, node, nonce]))


def mine(
    chain_id: int,
    registry: str,
    node: str,
    target: int,
    start: int = 0,
    progress: Callable[[int], None] | None = None,
    report_every: int = 20_000,
) -> tuple[int, int]:
    """Search nonces from `start`; return (nonce, hashes tried)."""
    prefix = encode(["uint256", "address", "address"], [chain_id, registry, node])
    nonce = start
    while True:
        if int.from_bytes(keccak(prefix + nonce.to_bytes(32, "big")), "big") < target:
            return nonce, nonce - start + 1
        nonce += 1
        if progress is not None and (nonce - start) % report_every == 0:
            progress(report_every)


def hash_rate(seconds: float = 0.3) -> float:
    """Hashes per second of `mine` on this machine."""
    prefix = encode(["uint256", "address", "address"], [1, "0x" + "11" * 20, "0x" + "22" * 20])
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for i in range(2000):
            keccak(prefix + (count + i).to_bytes(32, "big"))
        count += 2000
    return count / (time.perf_counter() - started)
