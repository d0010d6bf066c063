"""A verified round's charges wait for its finality: ModelLedger records the missed and penalized nodes
at commit (ChargesRecorded) and applies them to Reputation only when `settleCharges` is called after the
round's finality stands (finalized by the validator quorum, past its complaint deadline). A round that is
disputed never charges anyone, so nothing has to be reversed. Settling is permissionless: the coordinator
does it after each round, a validator after each verdict, anyone with `flchain ledger settle`."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fl_chain.chain import quorum
from fl_chain.chain.charges import recorded_charges
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError


def has_pending(client: ChainClient, task: int, round_number: int) -> bool:
    """Whether the round holds charges that wait for its finality."""
    return bool(client.call(client.ledger.functions.hasPendingCharges(task, round_number)))


def settle(client: ChainClient, account: LocalAccount, task: int, round_number: int) -> TxReceipt:
    """Apply a verified round's recorded charges (ModelLedger.settleCharges); reverts with
    FinalityNotStanding until its finality stands, NothingToSettle once done."""
    found = recorded_charges(client, task, round_number)
    if not found:
        raise FlchainError(f"round {round_number} of task {task} recorded no charges to settle")
    fn = client.ledger.functions.settleCharges(task, round_number, found.missed, found.penalized)
    return client.transact(account, fn)


def due_rounds(client: ChainClient, task: int | None = None) -> list[tuple[int, int]]:
    """(task, round) pairs, of one task or all, whose charges are still held although their finality
    stands."""
    filters = {} if task is None else {"task": task}
    recorded = {_key(e) for e in client.logs(client.ledger, "ChargesRecorded", **filters)}
    settled = {_key(e) for e in client.logs(client.ledger, "ChargesSettled", **filters)}
    return [
        (t, r)
        for t, r in sorted(recorded - settled)
        if has_pending(client, t, r) and quorum.finality_stands(client, t, r)
    ]


def _key(event: Any) -> tuple[int, int]:
    return int(event["args"]["task"]), int(event["args"]["round"])


def settle_due(
    client: ChainClient, account: LocalAccount, task: int | None = None
) -> tuple[list[tuple[int, int]], list[str]]:
    """Settle every due (task, round) (due_rounds); those settled and the nodes their charges suspended
    (Reputation's AutoSuspended events)."""
    done: list[tuple[int, int]] = []
    suspended: list[str] = []
    for t, r in due_rounds(client, task):
        receipt = settle(client, account, t, r)
        done.append((t, r))
        suspended += [str(e["node"]) for e in client.events(client.reputation, "AutoSuspended", receipt)]
    return done, suspended
