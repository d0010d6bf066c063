"""A validator: reacts to round commits seen by its ChainWatcher, fetches the committed model by its
on-chain URI (verified against the hash), evaluates it on its own held-out data and attests
(hash, accuracy) to the ValidationQuorum contract. A verified round is first re-derived from its
node-signed updates (verify/round_check.py): the validator attests "derivation correct" only if everything
re-derives, and disputes the round otherwise, naming the leaf that differs. A node's complaint that its
signed update was left out (UpdateOmitted) is disputed when the round's manifest does not disclose that
update and the commit did not record the node as missed (a node disclosed as having answered without a
valid signed update was heard: unfounded); after the round's complaint deadline a finalized round's
finality stands. A round that leaves out, or records as missed, a node that posted its claim on-chain
before the commit (ClaimPosted) is disputed outright (verify/round_check.py). A commitment-mode round is
attested only if
its published outcome leaves check (verify/commitment_check.py), and each reputation checkpoint is
re-computed from the task's outcome leaves: attested if the root agrees, disputed otherwise; once a
checkpoint the validator attested is finalized, it applies the checkpoint's suspensions itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from eth_account.signers.local import LocalAccount

from fl_chain.chain import checkpoints, ledger, quorum
from fl_chain.chain.client import ChainClient
from fl_chain.chain.published import History, Unavailable, fetch_manifest
from fl_chain.chain.watcher import ChainEvent
from fl_chain.errors import FlchainError
from fl_chain.protocol.fixedpoint import to_fixed
from fl_chain.verify.commitment_check import check_checkpoint
from fl_chain.verify.modes import PlainRules, rules_for
from fl_chain.verify.round_check import judge_complaint


@dataclass
class Attestation:
    """What a validator attested."""

    task: int
    round: int
    model_hash: str
    accuracy: float
    tx: str
    derivation_seconds: float = 0.0  # time spent re-deriving a verified round (0 for a plain round)


@dataclass
class CheckpointVerdict:
    """What a validator did with a reputation checkpoint: attested (and, if that finalized it, which
    suspensions it applied) or disputed, and why."""

    checkpoint: int
    task: int
    attested: bool
    reason: str
    tx: str
    suspended: list[str] = field(default_factory=list)


@dataclass
class Dispute:
    """What a validator disputed, and why."""

    task: int
    round: int
    leaf: str
    reason: str
    tx: str


class Validator:
    """Evaluate and attest committed rounds (optionally of one task only)."""

    def __init__(
        self,
        client: ChainClient,
        account: LocalAccount,
        accuracy_of: Callable[[int, dict[str, np.ndarray]], float],
        task: int | None = None,
        updates_base: str | None = None,
    ) -> None:
        """`accuracy_of(round, arrays)`: the task's own evaluation on this validator's held-out data
        (`task_accuracy` for a TaskSpec, `evaluate_fn_accuracy` for a Flower App's evaluate_fn).
        `updates_base`: where this validator reads verified rounds' update blobs (default: the task's
        store + "updates/", which must then be readable here)."""
        quorum.quorum_contract(client, "a validator")
        self.client, self.account, self.accuracy_of, self.task = client, account, accuracy_of, task
        self.updates_base = updates_base
        self.pending: dict[tuple[str, int, int], ChainEvent] = {}  # events whose data was unavailable
        self._histories: dict[int, History] = {}  # commitment-mode tasks' outcome leaves, fetched once
        self._rules_of: dict[int, PlainRules] = {}  # each task's ledger-mode rules (verify/modes.py)
        self._retried = 0.0

    def handle(self, event: ChainEvent) -> Attestation | Dispute | CheckpointVerdict | None:
        """Attest (or dispute) a newly committed round or reputation checkpoint, judge a node's omission
        complaint; other events (and retractions) are ignored. A round or checkpoint whose published
        data cannot be read yet raises Unavailable and is kept for `retry`."""
        if event.name not in ("RoundCommitted", "UpdateOmitted", "CheckpointProposed") or event.removed:
            return None
        task = int(event.args["task"])
        rnd = int(event.args["id"] if event.name == "CheckpointProposed" else event.args["round"])
        if self.task is not None and task != self.task:
            return None
        key = (event.name, task, rnd)
        try:
            done = self._handle(event, task, rnd)
        except Unavailable:
            self.pending[key] = event
            raise
        self.pending.pop(key, None)
        return done

    def retry(self, every: float = 5.0) -> list[Attestation | Dispute | FlchainError]:
        """Handle again, at most every `every` seconds, the events whose data was unavailable: what was
        done, or the error of each that still failed."""
        if not self.pending or time.monotonic() - self._retried < every:
            return []
        self._retried = time.monotonic()
        out: list[Attestation | Dispute | FlchainError] = []
        for event in list(self.pending.values()):
            try:
                done = self.handle(event)
            except FlchainError as exc:
                out.append(exc)
                continue
            if done is not None:
                out.append(done)
        return out

    def _handle(
        self, event: ChainEvent, task: int, rnd: int
    ) -> Attestation | Dispute | CheckpointVerdict | None:
        if event.name == "CheckpointProposed":
            return self.judge_checkpoint(task, rnd)
        if event.name == "UpdateOmitted":
            digest = event.args["updateHash"]  # 0x hex in a ChainEvent, bytes straight from web3
            digest = bytes.fromhex(digest[2:]) if isinstance(digest, str) else bytes(digest)
            return self.judge_complaint(task, rnd, str(event.args["node"]), digest)
        me = self.account.address
        if quorum.has_attested(self.client, task, rnd, me) or quorum.has_disputed(self.client, task, rnd, me):
            return None
        return self.attest(task, rnd)

    def attest(self, task: int, rnd: int) -> Attestation | Dispute:
        """Check the round by its task's ledger mode (verify/modes.py: a verified round is re-derived, a
        commitment round's outcome leaves checked) and dispute it if anything differs; else fetch,
        verify and evaluate its model and attest."""
        rules = self._rules(task)
        judged = rules.judge(task, rnd)
        if judged.dispute is not None:
            return self._dispute(task, rnd, *judged.dispute)
        record, arrays = ledger.load_model(self.client, task, rnd)
        accuracy = float(self.accuracy_of(rnd, arrays))
        if not 0.0 <= accuracy <= 1.0:
            raise FlchainError(f"the evaluation returned accuracy {accuracy}: expected a fraction in 0..1")
        receipt = rules.attest(self.account, task, rnd, record.model_hash, to_fixed(accuracy), judged)
        return Attestation(
            task,
            rnd,
            "0x" + record.model_hash.hex(),
            accuracy,
            "0x" + bytes(receipt["transactionHash"]).hex(),
            round(judged.seconds, 3),
        )

    def _rules(self, task: int) -> PlainRules:
        """The rules of the task's ledger mode, read from the chain once per task."""
        if task not in self._rules_of:
            mode = ledger.task_mode(self.client, task)
            self._rules_of[task] = rules_for(mode, self.client, self.updates_base, self._history)
        return self._rules_of[task]

    def _history(self, task: int) -> History:
        if task not in self._histories:
            self._histories[task] = History(self.client, task)
        return self._histories[task]

    def judge_checkpoint(self, task: int, checkpoint_id: int) -> CheckpointVerdict | None:
        """Re-compute a proposed reputation checkpoint from the task's outcome leaves; attest it if the
        root agrees (and apply its suspensions if that finalized it), dispute it otherwise. A correct
        checkpoint whose base is not finalized yet raises Unavailable (kept for `retry`)."""
        if checkpoints.has_voted(self.client, checkpoint_id, self.account.address):
            return None
        check = check_checkpoint(self.client, checkpoint_id, self._history(task), self.account.address)
        if not check.ok:
            receipt = checkpoints.dispute(
                self.client, self.account, checkpoint_id, check.node, check.difference
            )
            return CheckpointVerdict(checkpoint_id, task, False, check.difference, _tx(receipt))
        if check.waiting:  # the contract counts an attestation only on a finalized base: retry later
            raise Unavailable(check.waiting)
        receipt = checkpoints.attest(self.client, self.account, checkpoint_id, check.record.root)
        verdict = CheckpointVerdict(
            checkpoint_id, task, True, "re-computed from the outcome leaves", _tx(receipt)
        )
        if self.client.events(checkpoints.contract(self.client), "CheckpointFinalized", receipt):
            verdict.suspended = checkpoints.apply_suspensions(self.client, self.account, check.expected)
        return verdict

    def judge_complaint(self, task: int, rnd: int, node: str, update_hash: bytes) -> Dispute | None:
        """Dispute the round if the complaining node's signed update is neither disclosed in the manifest
        nor excused by the commit (recorded as missed). A node whose disclosed update has another hash
        signed two updates for one round, and a node disclosed as having answered without a valid signed
        update was heard: their complaints are refused (no dispute). A complaint judged after the round's
        complaint deadline about a finalized round is ignored: its finality stands (the ledger refuses
        complaints after the deadline, the quorum disputes of a finalized round)."""
        if quorum.has_disputed(self.client, task, rnd, self.account.address):
            return None
        if quorum.finality_stands(self.client, task, rnd):
            return None
        try:
            manifest, _ = fetch_manifest(self.client, task, rnd)
        except Unavailable:  # no verdict on what cannot be read yet: `retry` handles the complaint later
            raise
        except FlchainError as exc:
            return self._dispute(task, rnd, b"", f"manifest: {exc}")
        if judge_complaint(self.client, manifest, task, rnd, node, update_hash)[0] != "omitted":
            return None
        return self._dispute(
            task,
            rnd,
            bytes(12) + bytes.fromhex(node[2:]),
            f"omitted: {node}'s update 0x{update_hash.hex()[:16]}",
        )

    def _dispute(self, task: int, rnd: int, leaf: bytes, reason: str) -> Dispute:
        leaf = leaf.rjust(32, b"\0") if leaf else bytes(32)
        receipt = quorum.dispute(self.client, self.account, task, rnd, leaf, reason)
        return Dispute(task, rnd, "0x" + leaf.hex(), reason, "0x" + bytes(receipt["transactionHash"]).hex())


def _tx(receipt) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


def task_accuracy(
    build_model: Callable[[int], object], data: tuple[np.ndarray, np.ndarray]
) -> Callable[[int, dict[str, np.ndarray]], float]:
    """Accuracy of a TaskSpec's model with the given arrays on (x, y)."""

    def accuracy_of(rnd: int, arrays: dict[str, np.ndarray]) -> float:
        from fl_chain.tasks.training import evaluate, set_arrays

        model = build_model(0)
        set_arrays(model, arrays)
        return evaluate(model, *data)[1]

    return accuracy_of


def evaluate_fn_accuracy(evaluate_fn: Callable) -> Callable[[int, dict[str, np.ndarray]], float]:
    """Accuracy from a Flower App's own `evaluate_fn(server_round, ArrayRecord) -> MetricRecord` (the one
    its ServerApp gives `strategy.start`): the metric named "accuracy" (or "acc")."""
    from fl_chain.wire.records import arrays_to_record
    from fl_chain.wire.report import metric_fields

    def accuracy_of(rnd: int, arrays: dict[str, np.ndarray]) -> float:
        fields = metric_fields(evaluate_fn(rnd, arrays_to_record(arrays)))
        if "accuracy" not in fields:
            raise FlchainError(
                f"the evaluate_fn returned no accuracy metric (got {sorted(fields.get('metrics', {}))})"
            )
        return fields["accuracy"]

    return accuracy_of
