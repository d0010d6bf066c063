"""What a node's key costs per message: eth-keys' secp256k1 backends side by side in one run, and the
keystore decryption a plain `flower-supernode` given the password repeats in every message's process.

Rows: signing an update claim's message and recovering its signer (what the coordinator does for every
reply), with eth-keys' compiled backend (coincurve, a dependency since issue 28) and its pure-Python
fallback; decrypting a keystore written the way `flchain` writes them (eth-account's scrypt defaults), in
a fresh process so its peak memory is its own. Best of REPEATS, CPU seconds; peak RSS of the decrypting
process. Prints a table and writes docs/signing.md and docs/signing.json.
Usage: .venv/bin/python bench/signing_speed.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from eth_account import Account
from eth_keys import KeyAPI
from eth_keys.backends import CoinCurveECCBackend, NativeECCBackend
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console()
DECRYPT = """
import json, sys, time
from pathlib import Path
from eth_account import Account

def high_water_mb():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

keystore = json.loads(sys.stdin.read())
Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
before = high_water_mb()
started = time.process_time()
Account.decrypt(keystore, "bench")
print(json.dumps({"cpu": time.process_time() - started, "extra_mb": high_water_mb() - before}))
"""


def best(fn: Callable[[], object], repeats: int) -> float:
    """The least CPU seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times)


def signature_rows(repeats: int) -> list[dict]:
    """Sign and recover one message hash with each backend."""
    account = Account.create()
    message_hash = bytes(32)
    rows = []
    for name, backend in (
        ("coincurve (compiled)", CoinCurveECCBackend),
        ("native (pure Python)", NativeECCBackend),
    ):
        keys = KeyAPI(backend)
        private = keys.PrivateKey(account.key)
        signature = private.sign_msg_hash(message_hash)
        assert signature.recover_public_key_from_msg_hash(message_hash) == private.public_key
        rows.append(
            {
                "backend": name,
                "sign_ms": 1e3 * best(lambda p=private: p.sign_msg_hash(message_hash), repeats),
                "recover_ms": 1e3
                * best(lambda k=keys, s=signature: k.ecdsa_recover(message_hash, s), repeats),
            }
        )
    return rows


def decrypt_row() -> dict:
    """One keystore decryption in a fresh process (as each message's app process does it)."""
    keystore = Account.encrypt(Account.create().key, "bench")
    out = subprocess.run(
        [sys.executable, "-c", DECRYPT],
        input=json.dumps(keystore),
        capture_output=True,
        text=True,
        check=True,
    )
    row = json.loads(out.stdout)
    row["kdf"] = f"{keystore['crypto']['kdf']} n={keystore['crypto']['kdfparams']['n']}"
    return row


def main() -> None:
    """Measure, print and write docs/signing.md and .json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    signatures, decrypt = signature_rows(args.repeats), decrypt_row()
    table = Table(title="a node's key, per message (CPU)")
    for col in ("what", "ms"):
        table.add_column(col, justify="right")
    lines = [
        "# What a node's key costs per message",
        "",
        "Measured by `bench/signing_speed.py` (best of "
        f"{args.repeats}, CPU time). The coordinator recovers one signer per reply; a node signs one claim "
        "per update.",
        "",
        "| eth-keys backend | sign ms | recover ms |",
        "|---|---:|---:|",
    ]
    for r in signatures:
        lines.append(f"| {r['backend']} | {r['sign_ms']:.2f} | {r['recover_ms']:.2f} |")
        table.add_row(f"{r['backend']}: sign / recover", f"{r['sign_ms']:.2f} / {r['recover_ms']:.2f}")
    lines += [
        "",
        f"Decrypting a node keystore ({decrypt['kdf']}, eth-account's default) in a fresh process, as every "
        "message's app process of a plain `flower-supernode` given FLCHAIN_KEY_PASSWORD does: "
        f"{decrypt['cpu']:.2f} s of CPU and {decrypt['extra_mb']:.0f} MB of peak memory above the process's "
        "imports. `flchain client` decrypts it once, in its signing agent.",
    ]
    table.add_row("keystore decrypt", f"{1e3 * decrypt['cpu']:.0f} ({decrypt['extra_mb']:.0f} MB)")
    out = ROOT / "docs" / "signing"
    out.with_suffix(".json").write_text(json.dumps({"signatures": signatures, "decrypt": decrypt}, indent=1))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print(table)
    console.print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
