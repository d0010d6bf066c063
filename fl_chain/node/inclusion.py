"""A node's own check of a verified round: was the update it signed included, with the weight it signed?

The flchain mod records every update the node signs (node/claims_file.py: a JSON line per round in the
file `flchain client` names for its app processes). When the chain shows the round's updates
root (UpdatesCommitted), the node fetches the round's public manifest and finds its leaf. Disclosed as
included or excluded (with the coordinator's reason): said. Not disclosed at all: the node posts its
signed update on-chain (ModelLedger.complainOmitted), which the validators then judge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from fl_chain.chain import update_claims
from fl_chain.chain.client import ChainClient
from fl_chain.chain.published import fetch_manifest
from fl_chain.errors import FlchainError
from fl_chain.protocol.update_signing import SignedUpdate


def claims_for(path: Path, task: int, round_number: int) -> list[tuple[SignedUpdate, str]]:
    """The updates this node signed for one round (normally one) with their tickets, from its claims
    file; unreadable or damaged lines are skipped (the file is the node's own memory, not input from
    others)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        try:
            d = json.loads(line)
            if d["task"] != task or d["round"] != round_number:
                continue
            signed = SignedUpdate(
                int(d["chain_id"]),
                str(d["ledger"]),
                task,
                round_number,
                bytes.fromhex(str(d["hash"])[2:]),
                int(d["weight"]),
                str(d["signature"]),
            )
            out.append((signed, str(d.get("ticket", ""))))
        except (ValueError, KeyError, TypeError):
            continue
    return out


@dataclass(frozen=True)
class Inclusion:
    """What a node found about its update in a verified round."""

    task: int
    round: int
    status: str  # included | excluded | omitted (complaint posted) | unchecked
    detail: str = ""
    tx: str = ""

    def line(self) -> str:
        """One line for the node's output."""
        where = f"task {self.task} round {self.round}"
        if self.status == "included":
            return f"{where}: my update is included ({self.detail})"
        if self.status == "excluded":
            return f"{where}: my update was disclosed as excluded: {self.detail}"
        if self.status == "omitted" and self.tx:
            return f"{where}: my signed update was left out without disclosure; complaint posted ({self.tx})"
        if self.status == "omitted":
            return f"{where}: my signed update was left out without disclosure; not complained: {self.detail}"
        return f"{where}: inclusion not checked: {self.detail}"


def check_inclusion(
    client: ChainClient, node: LocalAccount, signed: SignedUpdate, ticket: str = "", complain: bool = True
) -> Inclusion:
    """Find the node's signed update in its round's manifest; if it is not disclosed (and `complain`,
    with the coordinator's `ticket` for the round), post it on-chain as omitted."""
    task, rnd = signed.task, signed.round
    try:
        manifest, _ = fetch_manifest(client, task, rnd)
    except FlchainError as exc:
        return Inclusion(task, rnd, "unchecked", str(exc))
    entry = manifest.entry_of(node.address)
    if entry is not None and entry.unsigned:  # its reply reached the coordinator without a valid claim
        return Inclusion(task, rnd, "excluded", f"answered without a valid signed update: {entry.reason}")
    if entry is not None and entry.update_hash == signed.update_hash and entry.claimed == signed.weight:
        if entry.included:
            return Inclusion(task, rnd, "included", f"weight {entry.claimed}, score {entry.score}")
        return Inclusion(task, rnd, "excluded", entry.reason or "no reason given")
    if not complain or not ticket:
        return Inclusion(
            task, rnd, "omitted", "not disclosed" + ("" if ticket else " (no ticket to complain with)")
        )
    # the ledger would refuse a complaint after the window: the round's finality stands
    if not update_claims.complaint_window_open(client, task, rnd):
        deadline = update_claims.complaint_deadline(client, task, rnd)
        return Inclusion(task, rnd, "omitted", f"not disclosed; the complaint window closed at {deadline}")
    receipt = update_claims.complain_omitted(client, node, signed, ticket)
    return Inclusion(task, rnd, "omitted", "not disclosed", "0x" + bytes(receipt["transactionHash"]).hex())
