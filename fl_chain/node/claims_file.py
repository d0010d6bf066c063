"""Where a node remembers the updates it signed: one JSON line per signed update in the file named by
CLAIMS_ENV (set by `flchain client` for its app processes). Written from the flchain mod in every training
message's app process, so this module imports nothing heavy (no web3); node/inclusion.py reads it."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fl_chain.protocol.update_signing import SignedUpdate

CLAIMS_ENV = "FLCHAIN_CLAIMS_FILE"


def record_claim(signed: SignedUpdate, ticket: str = "") -> None:
    """Append what the node signed (and the coordinator's ticket that sampled it) to its claims file, if
    it has one (best effort: the reply goes out whether or not the node can remember it)."""
    path = os.environ.get(CLAIMS_ENV)
    if not path:
        return
    line = json.dumps(
        {
            "chain_id": signed.chain_id,
            "ledger": signed.ledger,
            "task": signed.task,
            "round": signed.round,
            "hash": "0x" + signed.update_hash.hex(),
            "weight": signed.weight,
            "signature": signed.signature,
            "ticket": ticket,
        }
    )
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        pass
