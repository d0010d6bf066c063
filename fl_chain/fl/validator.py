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
from fl_chain.errors import FlchainError


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
        accuracy_of: Callable[[int, dict[str, np.ndarray]], float],
        task: int | None = None,
    ) -> None:
        """`accuracy_of(round, arrays)`: the task's own evaluation on this validator's held-out data
        (`task_accuracy` for a TaskSpec, `evaluate_fn_accuracy` for a Flower App's evaluate_fn)."""
        quorum.quorum_contract(client, "a validator")
        self.client, self.account, self.accuracy_of, self.task = client, account, accuracy_of, task

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
        record, arrays = ledger.load_model(self.client, task, rnd)
        accuracy = float(self.accuracy_of(rnd, arrays))
        if not 0.0 <= accuracy <= 1.0:
            raise FlchainError(f"the evaluation returned accuracy {accuracy}: expected a fraction in 0..1")
        receipt = quorum.attest(self.client, self.account, task, rnd, record.model_hash, to_fixed(accuracy))
        return Attestation(
            task,
            rnd,
            "0x" + record.model_hash.hex(),
            accuracy,
            "0x" + bytes(receipt["transactionHash"]).hex(),
        )


def task_accuracy(
    build_model: Callable[[int], object], data: tuple[np.ndarray, np.ndarray]
) -> Callable[[int, dict[str, np.ndarray]], float]:
    """Accuracy of a TaskSpec's model with the given arrays on (x, y)."""

    def accuracy_of(rnd: int, arrays: dict[str, np.ndarray]) -> float:
        from fl_chain.fl.training import evaluate, set_arrays

        model = build_model(0)
        set_arrays(model, arrays)
        return evaluate(model, *data)[1]

    return accuracy_of


def evaluate_fn_accuracy(evaluate_fn: Callable) -> Callable[[int, dict[str, np.ndarray]], float]:
    """Accuracy from a Flower App's own `evaluate_fn(server_round, ArrayRecord) -> MetricRecord` (the one
    its ServerApp gives `strategy.start`): the metric named "accuracy" (or "acc")."""
    from fl_chain.fl.records import arrays_to_record
    from fl_chain.fl.report import metric_fields

    def accuracy_of(rnd: int, arrays: dict[str, np.ndarray]) -> float:
        fields = metric_fields(evaluate_fn(rnd, arrays_to_record(arrays)))
        if "accuracy" not in fields:
            raise FlchainError(
                f"the evaluate_fn returned no accuracy metric (got {sorted(fields.get('metrics', {}))})"
            )
        return fields["accuracy"]

    return accuracy_of
