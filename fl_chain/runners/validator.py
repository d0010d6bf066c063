"""ValidatorRun: what `flchain validator` does. Loads the validator's key (it must hold VALIDATOR_ROLE),
the ML task the rounds train (digits or a user TaskSpec) and its held-out data, and attests every
round commit its ChainWatcher delivers (re-deriving verified rounds first, and disputing those that do
not re-derive); a bad blob is reported, never attested, and the run goes on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fl_chain.chain import quorum, settlement
from fl_chain.chain.client import ChainClient
from fl_chain.chain.identity import load_key
from fl_chain.chain.watcher import ChainEvent, ChainWatcher
from fl_chain.errors import FlchainError
from fl_chain.tasks import load_object, load_task
from fl_chain.verify.validator import (
    Attestation,
    CheckpointVerdict,
    Dispute,
    Validator,
    evaluate_fn_accuracy,
    task_accuracy,
)
from fl_chain.wire.report import short

Say = Callable[[str], None]
SETTLE_EVERY = 30.0  # seconds between looks for rounds whose held charges became due


@dataclass
class ValidatorRun:
    """A validator and the watcher feeding it."""

    worker: Validator
    watcher: ChainWatcher
    _settled_at: float = 0.0

    @classmethod
    def open(
        cls,
        client: ChainClient,
        key: Path,
        password: str,
        task_spec: str,
        data: Path | None,
        task: int | None,
        confirmations: int,
        home: Path,
        evaluate: str | None = None,
        updates: str | None = None,
    ) -> ValidatorRun:
        """Check the key's role, load the task's evaluation (a TaskSpec and its held-out data, or a Flower
        App's evaluate_fn named by `evaluate`), resume the validator's cursor. `updates`: where verified
        rounds' update blobs are readable from here (default: the task's store + "updates/")."""
        account = load_key(key, password)
        quorum.quorum_contract(client, "a validator")
        if not quorum.is_validator(client, account.address):
            raise FlchainError(
                f"{account.address} lacks VALIDATOR_ROLE: ask the admin (flchain node validator-role)"
            )
        if evaluate is not None:
            if data is not None:
                raise FlchainError("--data is for a TaskSpec; an --evaluate function reads its own data")
            accuracy_of = evaluate_fn_accuracy(load_object(evaluate, "--evaluate"))
        else:
            spec = load_task(task_spec)
            held_out = spec.read_file(data) if data is not None else spec.server_data(0)[1]
            accuracy_of = task_accuracy(spec.build_model, held_out)
        worker = Validator(client, account, accuracy_of, task, updates)
        cursor = home / f"validator-{account.address}.cursor.json"
        return cls(worker, ChainWatcher(client, cursor, confirmations))

    def handle(self, event: ChainEvent, say: Say, complain: Say) -> None:
        """Attest one event if it is a new commit; report the outcome."""
        try:
            done = self.worker.handle(event)
        except FlchainError as exc:  # a bad blob is reported, not attested, and the validator goes on
            what = (
                f"checkpoint {event.args['id']}" if "id" in event.args else f"round {event.args.get('round')}"
            )
            complain(f"{what} of task {event.args.get('task')}: {exc}")
            return
        self._report(done, say, complain)

    def _report(
        self, done: Attestation | Dispute | CheckpointVerdict | FlchainError | None, say: Say, complain: Say
    ) -> None:
        if isinstance(done, FlchainError):
            complain(str(done))
        elif isinstance(done, CheckpointVerdict) and not done.attested:
            complain(f"disputed reputation checkpoint {done.checkpoint} of task {done.task}: {done.reason}")
        elif isinstance(done, CheckpointVerdict):
            applied = f"; applied suspensions: {', '.join(done.suspended)}" if done.suspended else ""
            say(
                f"attested reputation checkpoint {done.checkpoint} of task {done.task}: "
                f"{done.reason}, tx {short(done.tx)}{applied}"
            )
        elif isinstance(done, Dispute):
            complain(f"disputed task {done.task} round {done.round}: {done.reason} (tx {short(done.tx)})")
        elif done is not None:
            derived = " (derivation re-checked)" if done.derivation_seconds else ""
            say(
                f"attested task {done.task} round {done.round}: accuracy {100 * done.accuracy:.2f} %, "
                f"hash {short(done.model_hash)}, tx {short(done.tx)}{derived}"
            )

    def once(self, say: Say, complain: Say) -> None:
        """Attest what is new and return (a round whose data is unavailable is reported, not retried)."""
        for event in self.watcher.poll():
            self.handle(event, say, complain)

    def forever(self, say: Say, complain: Say) -> None:
        """Attest as commits arrive until interrupted; RPC outages are retried with backoff, and rounds
        whose updates could not be read yet are tried again every few seconds."""
        self.watcher.run(
            lambda event: self.handle(event, say, complain),
            on_retry=lambda message, wait: complain(f"RPC unavailable ({message}); retry in {wait:.1f} s"),
            on_idle=lambda: self.retry(say, complain),
        )

    def retry(self, say: Say, complain: Say) -> None:
        """Try again the rounds whose data was unavailable, and (every SETTLE_EVERY seconds) settle the
        charges of verified rounds whose finality now stands; report what came of it."""
        for done in self.worker.retry():
            self._report(done, say, complain)
        if time.monotonic() - self._settled_at >= SETTLE_EVERY:
            self._settled_at = time.monotonic()
            self.settle(say, complain)

    def settle(self, say: Say, complain: Say) -> None:
        """Apply the held charges of the watched task's (or every task's) rounds whose finality stands
        (chain/settlement.py: anyone may; the coordinator does too, after its rounds)."""
        try:
            done, suspended = settlement.settle_due(self.worker.client, self.worker.account, self.worker.task)
        except FlchainError as exc:
            complain(f"settling finalized rounds' charges failed (retried later): {exc}")
            return
        for task, rnd in done:
            say(f"settled the charges of task {task} round {rnd}: its finality stands")
        if suspended:
            say(f"settled charges suspended: {', '.join(suspended)}")
