"""What a validator checks before it attests a round, and which attestation it sends, for each ledger
mode: the verify side of coordinator/round_writers.py. The mode is the one the task recorded on-chain
(`ledger.task_mode`); nothing is inferred from which roots a round happens to carry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fl_chain.chain import ledger, quorum
from fl_chain.chain.client import ChainClient
from fl_chain.chain.published import History, Unavailable, fetch_outcomes
from fl_chain.errors import FlchainError
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.verify.commitment_check import round_differences
from fl_chain.verify.round_check import check_round


@dataclass
class Judged:
    """A round's check before attestation: a dispute (leaf, reason) or None, and the root to attest."""

    dispute: tuple[bytes, str] | None = None
    root: bytes | None = None
    seconds: float = 0.0  # time spent re-deriving (verified rounds)


class PlainRules:
    """Plain mode: nothing beyond the model itself to check; a plain attestation."""

    mode = LedgerMode.PLAIN

    def __init__(self, client: ChainClient) -> None:
        self.client = client

    def judge(self, task: int, rnd: int) -> Judged:
        """What is wrong with the round besides its model (nothing to check in plain mode)."""
        return Judged()

    def attest(
        self, account: LocalAccount, task: int, rnd: int, model_hash: bytes, accuracy: int, judged: Judged
    ) -> TxReceipt:
        """Attest the round (hash and fixed-point accuracy)."""
        return quorum.attest(self.client, account, task, rnd, model_hash, accuracy)


class VerifiedRules(PlainRules):
    """Verified mode: every round after the initial model is re-derived from its node-signed updates
    first; the attestation names the updates root it re-derived."""

    mode = LedgerMode.VERIFIED

    def __init__(self, client: ChainClient, updates_base: str | None = None) -> None:
        super().__init__(client)
        self.updates_base = updates_base

    def judge(self, task: int, rnd: int) -> Judged:
        """Re-derive the round; Unavailable when its data cannot be read yet (no verdict either way)."""
        if rnd == 0:  # the initial model, committed plain
            return Judged()
        check = check_round(self.client, task, rnd, self.updates_base)
        if check.unreadable and not check.differences:
            raise Unavailable(f"cannot re-derive the round yet: {check.unreadable[0]}")
        if not check.ok:
            first = check.first()
            return Judged((first.leaf, first.what), seconds=check.seconds)
        return Judged(root=ledger.updates_root(self.client, task, rnd), seconds=check.seconds)

    def attest(
        self, account: LocalAccount, task: int, rnd: int, model_hash: bytes, accuracy: int, judged: Judged
    ) -> TxReceipt:
        """Attest "derivation correct" with the re-derived root (round 0: a plain attestation)."""
        if judged.root is None:
            return super().attest(account, task, rnd, model_hash, accuracy, judged)
        return quorum.attest_verified(self.client, account, task, rnd, model_hash, judged.root, accuracy)


class CommitmentRules(PlainRules):
    """Commitment mode: the round's published outcome leaves must give the committed root and agree with
    the chain; the attestation names the outcomes root."""

    mode = LedgerMode.COMMITMENT

    def __init__(self, client: ChainClient, history_of: Callable[[int], History]) -> None:
        super().__init__(client)
        self.history_of = history_of

    def judge(self, task: int, rnd: int) -> Judged:
        """Check the outcome leaves (Unavailable if they cannot be read yet); remember good ones for the
        task's checkpoints."""
        try:
            outcomes = fetch_outcomes(self.client, task, rnd)
        except Unavailable:
            raise
        except FlchainError as exc:
            return Judged((b"", f"outcomes: {exc}"))
        differences = round_differences(self.client, outcomes, task, rnd)
        if differences:
            return Judged((b"", differences[0]))
        self.history_of(task).rounds[rnd] = outcomes
        return Judged(root=outcomes.root())

    def attest(
        self, account: LocalAccount, task: int, rnd: int, model_hash: bytes, accuracy: int, judged: Judged
    ) -> TxReceipt:
        """Attest the round with the outcomes root it checked."""
        assert judged.root is not None
        return quorum.attest_outcomes(self.client, account, task, rnd, model_hash, judged.root, accuracy)


def rules_for(
    mode: LedgerMode,
    client: ChainClient,
    updates_base: str | None = None,
    history_of: Callable[[int], History] | None = None,
) -> PlainRules:
    """The validator's rules for a task of `mode`."""
    if mode is LedgerMode.VERIFIED:
        return VerifiedRules(client, updates_base)
    if mode is LedgerMode.COMMITMENT:
        return CommitmentRules(client, history_of or (lambda task: History(client, task)))
    return PlainRules(client)
