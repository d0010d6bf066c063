"""A validator: reacts to round commits seen by its ChainWatcher, fetches the committed model by its
on-chain URI (verified against the hash), evaluates it on its own held-out data and attests
(hash, accuracy) to the ValidationQuorum contract."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from eth_account.signers.local import LocalAccount

from fl_chain.chain import ledger, quorum
from fl_chain.chain.client import ChainClient
from fl_chain.chain.fixedpoint import to_fixed
from fl_chain.chain.watcher import ChainEvent


@dataclass
class Attestation:
    """What a validator attested."""

    task: int
    round: int
    model_hash: str
    accuracy: float
    tx: str


class Validator:
    """Evaluate and attest committed rounds (optionally of one task only)."""

    def __init__(
        self,
        client: ChainClient,
        account: LocalAccount,
        data: tuple[np.ndarray, np.ndarray],
        build_model: Callable[[int], object],
        task: int | None = None,
    ) -> None:
        quorum.quorum_contract(client, "a validator")
        self.client, self.account, self.data, self.build_model, self.task = (
            client,
            account,
            data,
            build_model,
            task,
        )

    def handle(self, event: ChainEvent) -> Attestation | None:
        """Attest a newly committed round; other events (and retractions) are ignored."""
        if event.name != "RoundCommitted" or event.removed:
            return None
        task, rnd = int(event.args["task"]), int(event.args["round"])
        if self.task is not None and task != self.task:
            return None
        if quorum.has_attested(self.client, task, rnd, self.account.address):
            return None
        return self.attest(task, rnd)

    def attest(self, task: int, rnd: int) -> Attestation:
        """Fetch, verify, evaluate and attest one round."""
        from fl_chain.fl.training import evaluate, set_arrays

        record, arrays = ledger.load_model(self.client, task, rnd)
        model = self.build_model(0)
        set_arrays(model, arrays)
        _, accuracy = evaluate(model, *self.data)
        receipt = quorum.attest(self.client, self.account, task, rnd, record.model_hash, to_fixed(accuracy))
        return Attestation(
            task,
            rnd,
            "0x" + record.model_hash.hex(),
            accuracy,
            "0x" + bytes(receipt["transactionHash"]).hex(),
        )
