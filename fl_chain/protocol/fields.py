"""The one definition of every field the parties exchange: an address, a 32-byte hash, a signature, a
uint256, a finite number... Used for published documents (a verified round's manifest, a commitment
round's outcome leaves, a checkpoint's leaves), an update's signed claim and a join answer, so the same
field is checked the same way wherever it arrives.

A raising check takes the field's `label`, the caller's name for it (e.g.
"rounds/t1-r4-ab.json: entries[2].node" or "the update claim's hash"), and raises a one-line
FlchainError "<label> is not <what was expected>" that quotes none of the value. The `is_` predicates
serve callers that answer with a reason instead of raising.
"""

from __future__ import annotations

import math
import re
from typing import TypeGuard

from fl_chain.errors import FlchainError

UINT256_MAX = 2**256 - 1
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_CANONICAL_HASH = re.compile(r"0x[0-9a-f]{64}")  # as "0x" + bytes.hex() writes it
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")  # r, s, v: 65 bytes


def is_address(value: object) -> TypeGuard[str]:
    """Whether `value` is 0x + 40 hex digits (any case; the EIP-55 checksum is not required)."""
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


def is_signature(value: object) -> TypeGuard[str]:
    """Whether `value` is 0x + 130 hex digits (a 65-byte ECDSA signature; not whether it recovers)."""
    return isinstance(value, str) and _SIGNATURE.fullmatch(value) is not None


def is_uint(value: object, maximum: int = UINT256_MAX) -> TypeGuard[int]:
    """Whether `value` is an integer (not a bool) in 0..maximum."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def address(value: object, label: str) -> str:
    """`value` if it is an address (is_address), as given."""
    if not is_address(value):
        raise FlchainError(f"{label} is not an address (0x + 40 hex digits)")
    return value


def hash_text(value: object, label: str) -> str:
    """`value` if it is a 32-byte hash in its canonical text, 0x + 64 lowercase hex digits (a document
    compares and looks up hashes as text, so there is one spelling)."""
    if not isinstance(value, str) or _CANONICAL_HASH.fullmatch(value) is None:
        raise FlchainError(f"{label} is not 0x + 64 lowercase hex digits")
    return value


def hash_bytes(value: object, label: str) -> bytes:
    """The 32 bytes of a hash given as 0x + 64 hex digits (any case)."""
    if not isinstance(value, str) or _HASH.fullmatch(value) is None:
        raise FlchainError(f"{label} is not 0x + 64 hex digits")
    return bytes.fromhex(value[2:])


def signature(value: object, label: str) -> str:
    """`value` if it is a signature's text (is_signature)."""
    if not is_signature(value):
        raise FlchainError(f"{label} is not 0x + 130 hex digits")
    return value


def uint(value: object, label: str) -> int:
    """`value` if it is a uint256 (is_uint)."""
    if not is_uint(value):
        raise FlchainError(f"{label} is missing or not a uint256 (a non-negative integer below 2**256)")
    return value


def finite(value: object, label: str) -> float:
    """`value` as a float if it is a finite number (int or float, not a bool)."""
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            pass
    if not math.isfinite(number):
        raise FlchainError(f"{label} is missing or not a finite number")
    return number


def text(value: object, label: str) -> str:
    """`value` if it is a string."""
    if not isinstance(value, str):
        raise FlchainError(f"{label} is missing or not a string")
    return value


def array(value: object, label: str) -> list:
    """`value` if it is a JSON array."""
    if not isinstance(value, list):
        raise FlchainError(f"{label} is missing or not a list")
    return value


def mapping(value: object, label: str) -> dict:
    """`value` if it is a JSON object."""
    if not isinstance(value, dict):
        raise FlchainError(f"{label} is not an object")
    return value
