"""Node identity: encrypted keystores (eth-account) and loading them with a password."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from fl_chain.errors import FlchainError, read_text_file
from fl_chain.protocol.fields import is_address

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

# eth-account (~0.7 s to import) is imported inside the functions that sign or decrypt: the flchain mod
# reads a keystore's address in every app process Flower starts, and needs no key for that.

PASSWORD_ENV = "FLCHAIN_KEY_PASSWORD"
# Where earlier versions handed app processes the decrypted node key. Nothing reads it any more (the node
# signs through its signing agent, runners/signing_agent.py); the name is still scrubbed from the
# environment of every process flchain starts, so a key a user left there never reaches app code.
DECRYPTED_KEY_ENV = "FLCHAIN_NODE_KEY"


def write_keystore(path: Path, password: str, overwrite: bool = False) -> str:
    """Create a new secp256k1 key, write it encrypted (scrypt keystore v3) and return its address."""
    if path.exists() and not overwrite:
        raise FlchainError(f"{path} already exists: refusing to overwrite a key (use --force)")
    if not password:
        raise FlchainError("an empty keystore password is not allowed")
    from eth_account import Account

    account = Account.create()
    keystore = Account.encrypt(account.key, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keystore, fh)
    tmp.replace(path)
    return account.address


def keystore_address(path: Path, checksum: bool = True) -> str:
    """The address stored in a keystore file, read without the password (EIP-55 checksummed, or
    lowercase when `checksum` is False)."""
    data = _read_keystore(path)
    if "address" not in data:
        raise FlchainError(f"{path}: keystore has no 'address' field")
    address = "0x" + str(data["address"]).lower().removeprefix("0x")
    if not is_address(address):
        raise FlchainError(f"{path}: field 'address': expected 40 hex digits")
    if not checksum:
        return address
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


def load_key(path: Path, password: str) -> LocalAccount:
    """Decrypt a keystore; a wrong password is a one-line error naming the file."""
    from eth_account import Account

    data = _read_keystore(path)
    try:
        key = Account.decrypt(data, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise FlchainError(f"wrong password for keystore {path}") from None
        raise FlchainError(f"{path}: damaged keystore ({str(exc)[:80]})") from None
    except (
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OverflowError,
        AssertionError,
        NotImplementedError,
    ) as exc:
        # a keystore whose JSON parses but whose crypto section is missing fields or mistyped (eth_keyfile
        # checks some fields, such as the MAC's "hmac" prf, with assert), or names a version eth_keyfile
        # does not read (EthKeyfileNotImplementedError for anything but 3 and 4)
        raise FlchainError(f"{path}: damaged keystore ({type(exc).__name__}: {str(exc)[:80]})") from None
    return Account.from_key(key)


def _read_keystore(path: Path) -> dict:
    if not path.exists():
        raise FlchainError(f"keystore {path} not found")
    try:
        data = json.loads(read_text_file(path, "keystore"))
    except ValueError:
        raise FlchainError(f"{path}: not a JSON keystore") from None
    if not isinstance(data, dict) or ("crypto" not in data and "Crypto" not in data):
        raise FlchainError(f"{path}: not an Ethereum keystore (no 'crypto' field)")
    return data


def password_from_env(path: Path) -> str:
    """A keystore's password from FLCHAIN_KEY_PASSWORD (processes without a terminal: apps, servers)."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        raise FlchainError(f"set {PASSWORD_ENV} to decrypt the keystore {path}")
    return password


def resolve_account(
    dev_keys: dict[str, str],
    role: str,
    key: Path | None = None,
    password: str | None = None,
    private_key: str | None = None,
) -> LocalAccount:
    """The one way an acting account is chosen: an explicit private key (simulated nodes), else the
    keystore `key` (password given, else from FLCHAIN_KEY_PASSWORD), else the local chain's development
    key for `role` from the deployment file; otherwise a one-line error naming what to pass."""
    from eth_account import Account

    if private_key:
        return Account.from_key(private_key)
    if key is not None:
        return load_key(key, password if password is not None else password_from_env(key))
    dev = dev_keys.get(role)
    if dev:
        return Account.from_key(dev)
    raise FlchainError(f"no {role} key: this deployment has no local {role} key, pass the {role}'s keystore")
