"""A task's ledger mode: how its rounds go on-chain. The task records it when it is created
(`ModelLedger.createTask`), so a validator, an auditor or a node reads it from the chain instead of
guessing from which roots a round carries, and the contract refuses a commit of another mode."""

from __future__ import annotations

from enum import IntEnum

from fl_chain.errors import FlchainError


class LedgerMode(IntEnum):
    """The values of `ModelLedger.LedgerMode` (the contract's enum order)."""

    PLAIN = 0  # commitRound: model hash, URI, every participant's score on-chain
    VERIFIED = 1  # commitVerifiedRound: plus the root of the node-signed updates validators re-derive
    COMMITMENT = 2  # commitOutcomes: the root of the outcome leaves; reputation checkpointed off-chain

    @property
    def label(self) -> str:
        """The name used in configs and on the command line ("plain", "verified", "commitment")."""
        return self.name.lower()

    @classmethod
    def named(cls, name: str) -> LedgerMode:
        """The mode a config or CLI names; a one-line error for anything else."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            choices = ", ".join(m.label for m in cls)
            raise FlchainError(f"unknown ledger mode {name!r}: expected one of {choices}") from None
