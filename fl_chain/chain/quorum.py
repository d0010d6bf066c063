"""ValidationQuorum wrapper: validators' attestations and disputes, and round finality."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from fl_chain.chain import update_claims
from fl_chain.chain.client import ChainClient, poll, role_id
from fl_chain.errors import FlchainError

VALIDATOR_ROLE = "VALIDATOR_ROLE"


def quorum_contract(client: ChainClient, why: str = "this command") -> Contract:
    """The ValidationQuorum contract, or a one-line error for deployments made before it existed."""
    if client.validation is None:
        raise FlchainError(f"{why} needs a deployment with the ValidationQuorum contract: redeploy")
    return client.validation


MAX_REASON_BYTES = 200  # ValidationQuorum.MAX_REASON_BYTES


def is_finalized(client: ChainClient, task: int, round_number: int) -> bool:
    """True once the quorum attested the round's hash, unless a quorum disputed it."""
    return bool(client.call(quorum_contract(client).functions.isFinalized(task, round_number)))


def attestation_count(client: ChainClient, task: int, round_number: int) -> int:
    """Distinct validators that attested the round's hash."""
    return int(client.call(quorum_contract(client).functions.attestations(task, round_number)))


def quorum(client: ChainClient) -> int:
    """Attestations needed to finalize a round."""
    return int(client.call(quorum_contract(client).functions.quorum()))


def is_disputed(client: ChainClient, task: int, round_number: int) -> bool:
    """True once a quorum of validators disputed the round."""
    return bool(client.call(quorum_contract(client).functions.isDisputed(task, round_number)))


def dispute_count(client: ChainClient, task: int, round_number: int) -> int:
    """Distinct validators that disputed the round."""
    return int(client.call(quorum_contract(client).functions.disputeCount(task, round_number)))


def has_disputed(client: ChainClient, task: int, round_number: int, validator: str) -> bool:
    """True if this validator already disputed the round."""
    fn = quorum_contract(client).functions.hasDisputed(
        task, round_number, Web3.to_checksum_address(validator)
    )
    return bool(client.call(fn))


LATEST_FINALIZED_WALK = 256  # rounds latest_finalized looks back over, newest first
_WALK_BATCH = 32  # isFinalized reads per JSON-RPC batch while walking back


def latest_finalized(client: ChainClient, task: int, walk: int = LATEST_FINALIZED_WALK) -> int:
    """The newest finalized round of a task (a one-line error if none).

    The contract's `latestFinalized` is the newest round that reached the quorum, and stays so if a
    quorum disputes that round afterwards. Here a round counts only while `isFinalized` holds: from the
    contract's answer the walk goes back over disputed rounds (and rounds that never reached the quorum)
    to the first finalized one, reading `isFinalized` in batches, and looks at no more than `walk` rounds
    (the contract's answer included): past that it is a one-line error rather than a read per round of a
    long history."""
    functions = quorum_contract(client).functions
    newest = int(client.call(functions.latestFinalized(task)))
    if is_finalized(client, task, newest):
        return newest
    lowest = max(newest - max(walk, 1) + 1, 0)
    top = newest - 1
    while top >= lowest:
        rounds = list(range(top, max(top - _WALK_BATCH, lowest - 1), -1))
        flags = client.call_many([functions.isFinalized(task, rnd) for rnd in rounds])
        for rnd, final in zip(rounds, flags, strict=True):
            if final:
                return rnd
        top = rounds[-1] - 1
    if lowest == 0:
        raise FlchainError(
            f"no round of task {task} is finalized: round {newest}, the newest that reached the quorum, "
            "was disputed, and no round before it is finalized"
        )
    raise FlchainError(
        f"no finalized round of task {task} among rounds {lowest}-{newest}: round {newest}, the newest "
        f"that reached the quorum, was disputed (the walk back stops after {walk} rounds)"
    )


def has_attested(client: ChainClient, task: int, round_number: int, validator: str) -> bool:
    """True if this validator already attested the round."""
    fn = quorum_contract(client).functions.hasAttested(
        task, round_number, Web3.to_checksum_address(validator)
    )
    return bool(client.call(fn))


def is_validator(client: ChainClient, address: str) -> bool:
    """True if the address holds VALIDATOR_ROLE."""
    fn = quorum_contract(client).functions.hasRole(role_id(VALIDATOR_ROLE), Web3.to_checksum_address(address))
    return bool(client.call(fn))


def set_validator(client: ChainClient, admin: LocalAccount, address: str, granted: bool = True) -> TxReceipt:
    """Grant or revoke VALIDATOR_ROLE (admin)."""
    functions = quorum_contract(client).functions
    fn = functions.grantRole if granted else functions.revokeRole
    return client.transact(admin, fn(role_id(VALIDATOR_ROLE), Web3.to_checksum_address(address)))


def attest(
    client: ChainClient, validator: LocalAccount, task: int, round_number: int, model_hash: bytes, metric: int
) -> TxReceipt:
    """Attest (hash, fixed-point metric) for a committed round."""
    fn = quorum_contract(client).functions.attest(task, round_number, model_hash, metric)
    return client.transact(validator, fn)


def attest_verified(
    client: ChainClient,
    validator: LocalAccount,
    task: int,
    round_number: int,
    model_hash: bytes,
    updates_root: bytes,
    metric: int,
) -> TxReceipt:
    """Attest that a verified round re-derives from its updates root, with the model's metric."""
    fn = quorum_contract(client).functions.attestVerified(
        task, round_number, model_hash, updates_root, metric
    )
    return client.transact(validator, fn)


def attest_outcomes(
    client: ChainClient,
    validator: LocalAccount,
    task: int,
    round_number: int,
    model_hash: bytes,
    outcomes_root: bytes,
    metric: int,
) -> TxReceipt:
    """Attest a commitment-mode round whose outcome leaves give `outcomes_root`, with the model's metric."""
    fn = quorum_contract(client).functions.attestOutcomes(
        task, round_number, model_hash, outcomes_root, metric
    )
    return client.transact(validator, fn)


def discount(
    client: ChainClient, sender: LocalAccount, task: int, round_number: int, validator: str
) -> TxReceipt:
    """Take the votes of an account that lost VALIDATOR_ROLE out of a round not yet finalized (or
    disputed); anyone may send it (StillValidator / NothingToDiscount are one-line errors)."""
    fn = quorum_contract(client).functions.discount(task, round_number, Web3.to_checksum_address(validator))
    return client.transact(sender, fn)


def discount_all(client: ChainClient, sender: LocalAccount, validator: str) -> list[tuple[int, int]]:
    """Discount every vote of a former validator that still counts towards an unresolved round (from
    its Attested and Disputed events: an off-chain walk, each discount O(1) on-chain); returns the
    (task, round) pairs discounted."""
    contract, who = quorum_contract(client), Web3.to_checksum_address(validator)
    voted = {
        (int(e["args"]["task"]), int(e["args"]["round"]))
        for name in ("Attested", "Disputed")
        for e in client.logs(contract, name, validator=who)
    }
    done = []
    for task, rnd in sorted(voted):
        attested = has_attested(client, task, rnd, who) and not is_finalized(client, task, rnd)
        disputed = has_disputed(client, task, rnd, who) and not is_disputed(client, task, rnd)
        if attested or disputed:
            discount(client, sender, task, rnd, who)
            done.append((task, rnd))
    return done


def reason_text(reason: str) -> str:
    """A dispute reason cut to MAX_REASON_BYTES of UTF-8 without splitting a character (a lone surrogate
    becomes '?')."""
    return reason.encode("utf-8", "replace")[:MAX_REASON_BYTES].decode("utf-8", "ignore")


def dispute(
    client: ChainClient, validator: LocalAccount, task: int, round_number: int, leaf: bytes, reason: str
) -> TxReceipt:
    """Dispute a round, naming what differed (`leaf`: at most 32 bytes, left-padded, e.g. a leaf hash or
    a node's 20-byte address; empty for the round as a whole) and why. The reason is cut to
    MAX_REASON_BYTES of UTF-8 without splitting a character (a lone surrogate becomes '?'). A finalized
    round past its complaint deadline reverts FinalityStands (see `finality_stands`)."""
    if len(leaf) > 32:
        raise FlchainError(f"a dispute names a leaf of at most 32 bytes, not {len(leaf)}")
    fn = quorum_contract(client).functions.dispute(
        task, round_number, leaf.rjust(32, b"\0"), reason_text(reason)
    )
    return client.transact(validator, fn)


def finality_stands(client: ChainClient, task: int, round_number: int) -> bool:
    """Whether the round is finalized and its complaint deadline (update_claims.complaint_deadline) has
    passed: no dispute can withdraw its finality any more."""
    return is_finalized(client, task, round_number) and not update_claims.complaint_window_open(
        client, task, round_number
    )


def require_finalized(client: ChainClient, task: int, round_number: int) -> None:
    """Refuse a round the validator quorum has not finalized."""
    quorum_contract(client, "finalized-only training")
    if is_disputed(client, task, round_number):
        raise FlchainError(
            f"round {round_number} of task {task} is disputed by the validators: refusing to train from it"
        )
    if not is_finalized(client, task, round_number):
        raise FlchainError(
            f"round {round_number} of task {task} is not finalized "
            f"({attestation_count(client, task, round_number)} of {quorum(client)} attestations): "
            "refusing to train from it"
        )


def wait_finalized(client: ChainClient, task: int, round_number: int, timeout: float) -> None:
    """Block until the validator quorum finalized the round (no-op if timeout <= 0)."""
    if timeout <= 0:
        return
    quorum_contract(client, "federation.wait_finalized")

    def finalized() -> bool | None:
        if is_finalized(client, task, round_number):
            return True
        if is_disputed(client, task, round_number):
            raise FlchainError(
                f"round {round_number} of task {task} was disputed by "
                f"{dispute_count(client, task, round_number)} validators: it will not be finalized "
                "(see flchain audit)"
            )
        return None

    late = f"round {round_number} of task {task} was not finalized by the validators within {timeout:.0f} s"
    poll(finalized, timeout, late)


def disputes_of(client: ChainClient, task: int) -> dict[int, list[dict]]:
    """The validators' disputes of a task's rounds (Disputed events' arguments), by round."""
    found: dict[int, list[dict]] = {}
    for e in client.logs(quorum_contract(client), "Disputed", task=task):
        found.setdefault(int(e["args"]["round"]), []).append(e["args"])
    return found


def attesters_of(client: ChainClient, task: int, round_number: int) -> list[str]:
    """The validators that attested a round (Attested events), in chain order."""
    events = client.logs(quorum_contract(client), "Attested", task=task, round=round_number)
    return [str(e["args"]["validator"]) for e in events]
