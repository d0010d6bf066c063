"""ModelLedger: tasks, committed rounds and contributions; the one verified way to load a committed
model (`load_model`). Reads go through `ChainClient.call`, writes through `ChainClient.transact`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import TimeExhausted, TransactionNotFound
from web3.types import EventData, TxReceipt

from fl_chain.chain.charges import newcomers, penalty_lists
from fl_chain.chain.client import ChainClient, ReceiptTimeout
from fl_chain.errors import FlchainError
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.protocol.model_bytes import arrays_from_bytes, require_model_hash
from fl_chain.store import fetch_blob
from fl_chain.store_read import model_cap, remember_model_size

ZERO_HASH = b"\0" * 32


@dataclass(frozen=True)
class RoundRecord:
    """A committed round as read from the chain."""

    round: int
    model_hash: bytes
    block: int
    timestamp: int
    participant_count: int
    uri: str


def create_task(
    client: ChainClient,
    coordinator: LocalAccount,
    config_hash: bytes,
    blob_base: str,
    mode: LedgerMode = LedgerMode.PLAIN,
    rules_hash: bytes = ZERO_HASH,
) -> int:
    """Create a task owned by the coordinator, its rounds committed in `mode` and re-derived with the
    rules `rules_hash` names (protocol/task_rules.py; required for a verified task) for its whole life;
    return its id."""
    receipt = client.transact(
        coordinator, client.ledger.functions.createTask(config_hash, blob_base, int(mode), rules_hash)
    )
    return int(client.events(client.ledger, "TaskCreated", receipt)[0]["task"])


@dataclass(frozen=True)
class TaskRecord:
    """A task as ModelLedger.getTask returns it."""

    owner: str
    next_round: int
    mode: LedgerMode
    config_hash: bytes
    rules_hash: bytes  # keccak of the task's rules document (protocol/task_rules.py); zero: none declared
    blob_base: str


def task_record(client: ChainClient, task: int) -> TaskRecord:
    """A task's record (owner, next round, mode, configHash, rulesHash, blob base); a one-line error if
    unknown."""
    require_task(client, task)
    owner, next_round, mode, config_hash, rules_hash, blob_base = client.call(
        client.ledger.functions.getTask(task)
    )
    return TaskRecord(
        str(owner),
        int(next_round),
        LedgerMode(int(mode)),
        bytes(config_hash),
        bytes(rules_hash),
        str(blob_base),
    )


def task_mode(client: ChainClient, task: int) -> LedgerMode:
    """The ledger mode a task was created in (the chain records it; nothing guesses it from roots)."""
    return task_record(client, task).mode


def commit_round(
    client: ChainClient,
    coordinator: LocalAccount,
    task: int,
    round_number: int,
    model_hash: bytes,
    uri: str,
    parent_hash: bytes,
    scores: Mapping[str, int],
    missed: list[str] | None = None,
    penalized: list[str] | None = None,
    timeout: float = 120.0,
    attempts: int = 5,
    updates_root: bytes | None = None,
    outcomes: tuple[bytes, int] | None = None,
) -> TxReceipt:
    """Commit one round; participants are sorted by address as the contract requires. `missed` are
    selected nodes without an answer in time, `penalized` those whose reply was rejected.

    If the receipt does not arrive in time, the chain is consulted before anything is re-sent: the round
    already holding this hash means the commit landed (its receipt is returned); a pending transaction
    is waited for again; a dropped one is re-sent. The contract's strict round sequence makes a
    duplicate impossible in any case; this keeps the coordinator from failing or skipping a round.
    With `updates_root` the round is committed as a verified round (`commitVerifiedRound`); with
    `outcomes` (root, leaf count) in commitment mode (`commitOutcomes`: scores stay off-chain)."""
    ordered = sorted((Web3.to_checksum_address(a) for a in scores), key=lambda a: int(a, 16))
    lookup = {a.lower(): s for a, s in scores.items()}
    on_missed, on_penalized = penalty_lists(ordered, missed or [], penalized or [])
    arguments = [
        task,
        round_number,
        model_hash,
        uri,
        parent_hash,
        ordered,
        [int(lookup[a.lower()]) for a in ordered],
        on_missed,
        on_penalized,
    ]
    if outcomes is not None:  # commitment mode: flat gas, the leaves are a blob named by their root
        fn = client.ledger.functions.commitOutcomes(*arguments[:5], outcomes[0], outcomes[1])
    elif updates_root is None:
        fn = client.ledger.functions.commitRound(*arguments, newcomers(client, task, ordered))
    else:  # a verified round: the same commit plus the root of its accepted updates (one more slot)
        joined = newcomers(client, task, ordered)
        fn = client.ledger.functions.commitVerifiedRound(*arguments, joined, updates_root)
    return _send_commit(client, coordinator, fn, (task, round_number, model_hash), timeout, attempts)


def _send_commit(
    client: ChainClient,
    coordinator: LocalAccount,
    fn: ContractFunction,
    commit: tuple[int, int, bytes],
    timeout: float,
    attempts: int,
) -> TxReceipt:
    """Send a commit (task, round, model hash) and wait for its receipt; a lost receipt is reconciled
    with the chain before anything is re-sent (see commit_round)."""
    task, round_number, model_hash = commit
    pending: bytes | None = None
    for _ in range(attempts):
        try:
            if pending is None:
                return client.transact(coordinator, fn, timeout=timeout)
            return client.w3.eth.wait_for_transaction_receipt(pending, timeout=timeout, poll_latency=0.05)
        except ReceiptTimeout as lost:
            pending = lost.tx_hash
        except TimeExhausted:
            pass
        landed = reconcile_commit(client, task, round_number, model_hash, pending)
        if landed is not None:
            return landed
        if not _still_known(client, pending):
            pending = None  # dropped from the pool and not on-chain: send it again
    raise FlchainError(
        f"round {round_number} of task {task}: no receipt after {attempts} waits of {timeout:g} s"
    )


def _still_known(client: ChainClient, tx_hash: bytes) -> bool:
    try:
        client.w3.eth.get_transaction(tx_hash)
    except TransactionNotFound:
        return False
    return True


def reconcile_commit(
    client: ChainClient, task: int, round_number: int, model_hash: bytes, tx_hash: bytes | None
) -> TxReceipt | None:
    """After a lost receipt, look at the chain: the receipt of the commit if the round already holds
    this hash, None if it does not (yet); an error if another hash was committed for the round."""
    if round_count(client, task) <= round_number:
        return None
    committed = get_round(client, task, round_number).model_hash
    if committed != model_hash:
        raise FlchainError(
            f"round {round_number} of task {task} was committed with hash 0x{committed.hex()}, "
            f"not 0x{model_hash.hex()}: another coordinator wrote this task"
        )
    logs = commit_events(client, task, round_number)
    return client.w3.eth.get_transaction_receipt(logs[0]["transactionHash"])


def commit_events(client: ChainClient, task: int, round_number: int | None = None) -> list[EventData]:
    """The RoundCommitted events of a task (of one round if given), in chain order."""
    rounds = {} if round_number is None else {"round": round_number}
    return client.logs(client.ledger, "RoundCommitted", task=task, **rounds)


def round_count(client: ChainClient, task: int) -> int:
    """Number of committed rounds of a task (round 0 included)."""
    return int(client.call(client.ledger.functions.roundCount(task)))


def task_count(client: ChainClient) -> int:
    """Number of tasks created on this deployment (ids are 1..count)."""
    return int(client.call(client.ledger.functions.taskCount()))


def task_owner(client: ChainClient, task: int) -> str:
    """The coordinator that created a task."""
    return task_record(client, task).owner


def task_config_hash(client: ChainClient, task: int) -> bytes:
    """The configHash a task was created with (its identity: protocol/task_identity.py)."""
    return task_record(client, task).config_hash


def newest_task(client: ChainClient, task: int | None = None) -> int:
    """`task` if given (checked to exist), else the newest task; a one-line error if there is none."""
    if task is not None:
        require_task(client, task)
        return task
    count = task_count(client)
    if count == 0:
        raise FlchainError("no task has been created on this deployment yet")
    return count


def newest_owned_task(client: ChainClient, coordinator: str) -> int:
    """The newest task created by this coordinator."""
    for task in range(task_count(client), 0, -1):
        if task_owner(client, task).lower() == coordinator.lower():
            return task
    raise FlchainError(f"no task owned by {coordinator} to resume")


def fetch_model_blob(client: ChainClient, task: int, round_number: int) -> tuple[RoundRecord, bytes]:
    """A committed round and its model blob, fetched by the on-chain URI (`store_read.fetch`: a checked
    scheme and place, capped at twice a verified blob of the task seen before, else at the ceiling) and
    verified against the hash."""
    record = get_round(client, task, round_number)
    key = model_size_key(client, task)
    blob = fetch_blob(record.uri, record.model_hash, model_cap(key))
    remember_model_size(key, len(blob))
    return record, blob


def model_size_key(client: ChainClient, task: int) -> tuple[int, str, int]:
    """What names a task's model size for `store_read.model_cap`: chain, ledger, task."""
    return (client.deployment.chain_id, str(client.ledger.address).lower(), task)


def load_model(client: ChainClient, task: int, round_number: int) -> tuple[RoundRecord, dict]:
    """A committed round and its model (named arrays), fetched and verified (`fetch_model_blob`)."""
    record, blob = fetch_model_blob(client, task, round_number)
    return record, arrays_from_bytes(blob)


def verify_model(client: ChainClient, task: int, round_number: int, arrays: Mapping) -> None:
    """Refuse arrays that are not the model committed on-chain for `round_number`."""
    require_model_hash(get_round(client, task, round_number).model_hash, arrays, task, round_number)


def get_round(client: ChainClient, task: int, round_number: int) -> RoundRecord:
    """A committed round, or a one-line error if it does not exist."""
    record = client.call(client.ledger.functions.getRound(task, round_number))
    uri = client.call(client.ledger.functions.roundUri(task, round_number))
    return RoundRecord(round_number, bytes(record[0]), record[1], record[2], record[3], uri)


def contributions(client: ChainClient, task: int, round_number: int) -> dict[str, int]:
    """Participant -> score of a committed round, from ContributionRecorded events."""
    block = get_round(client, task, round_number).block
    logs = client.logs(client.ledger, "ContributionRecorded", block, block, task=task, round=round_number)
    return {e["args"]["node"]: int(e["args"]["score"]) for e in logs}


def contribution_events(client: ChainClient, task: int) -> dict[int, list[EventData]]:
    """The ContributionRecorded events of a task, by round."""
    out: dict[int, list[EventData]] = {}
    for e in client.logs(client.ledger, "ContributionRecorded", task=task):
        out.setdefault(e["args"]["round"], []).append(e)
    return out


def rebase(client: ChainClient, coordinator: LocalAccount, task: int, from_round: int) -> TxReceipt:
    """Let the task's next round build on finalized round `from_round` because its newest round was
    disputed (ModelLedger.rebase)."""
    return client.transact(coordinator, client.ledger.functions.rebase(task, from_round))


def parent_round(client: ChainClient, task: int, round_number: int) -> int:
    """The round whose model `round_number` built on: the one before it, unless a rebase past a disputed
    round named another (TaskRebased)."""
    if round_number <= 0:
        raise FlchainError(f"round {round_number} of task {task} has no parent")
    if client.call(client.ledger.functions.rebasedParent(task, round_number)) == ZERO_HASH:
        return round_number - 1
    events = client.logs(client.ledger, "TaskRebased", task=task, round=round_number)
    return int(events[-1]["args"]["fromRound"])


def rebases(client: ChainClient, task: int) -> dict[int, int]:
    """Round -> the finalized round it builds on instead of its predecessor, for every rebase of a task."""
    events = client.logs(client.ledger, "TaskRebased", task=task)
    return {int(e["args"]["round"]): int(e["args"]["fromRound"]) for e in events}


def require_task(client: ChainClient, task: int) -> None:
    """Raise a one-line error if the task does not exist."""
    if not 1 <= task <= task_count(client):
        raise FlchainError(f"task {task} does not exist on this deployment")


def updates_root(client: ChainClient, task: int, round_number: int) -> bytes | None:
    """The Merkle root of a verified round's accepted updates, or None for a round committed without."""
    root = bytes(client.call(client.ledger.functions.updatesRoot(task, round_number)))
    return None if root == ZERO_HASH else root


def outcomes_root(client: ChainClient, task: int, round_number: int) -> bytes | None:
    """The Merkle root of a commitment-mode round's outcome leaves, or None for another round."""
    root = bytes(client.call(client.ledger.functions.outcomesRoot(task, round_number)))
    return None if root == ZERO_HASH else root
