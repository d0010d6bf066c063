"""Who a round's commit may charge (missed, penalized), and who it did: the lists in the order
ModelLedger takes them, task membership (a node joins a task in its first scored round; a task charges
its members and nodes of no task yet), and the charges a committed round listed (ModelLedger's
ChargesRecorded; chain/settlement.py applies a verified round's once its finality stands)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from web3 import Web3

from fl_chain.chain.client import ChainClient


def penalty_lists(
    participants: Iterable[str], missed: Iterable[str], penalized: Iterable[str]
) -> tuple[list[str], list[str]]:
    """`missed` and `penalized` as ModelLedger's commit takes them: checksummed, sorted by address,
    without duplicates and disjoint from each other and from the participants (a participant is
    never charged; a node both rejected and missing counts as penalized, the reply having arrived)."""
    scored = {a.lower() for a in participants}
    charged = {a.lower() for a in penalized} - scored
    absent = {a.lower() for a in missed} - scored - charged
    return _by_address(absent), _by_address(charged)


def _by_address(addresses: Iterable[str]) -> list[str]:
    return sorted((Web3.to_checksum_address(a) for a in addresses), key=lambda a: int(a, 16))


def is_member(client: ChainClient, task: int, node: str) -> bool:
    """Whether a node was a scored participant of one of the task's rounds."""
    return bool(client.call(client.ledger.functions.isMember(task, Web3.to_checksum_address(node))))


def _flags(client: ChainClient, view: str, task: int, nodes: list[str]) -> list[bool]:
    """ModelLedger's per-node view `view(task, node)` for every node, in one batched read."""
    fn = getattr(client.ledger.functions, view)
    return [bool(f) for f in client.call_many([fn(task, Web3.to_checksum_address(n)) for n in nodes])]


def newcomers(client: ChainClient, task: int, participants: list[str]) -> list[str]:
    """The participants (in their order) that are not members of the task yet: the commit's `joined`
    list, which makes them members (members already pay nothing for it in the commit)."""
    members = _flags(client, "isMember", task, participants)
    return [p for p, member in zip(participants, members, strict=True) if not member]


def chargeable_among(client: ChainClient, task: int, nodes: Iterable[str]) -> set[str]:
    """The nodes among `nodes` (lowercase) the task's commits may record as missed or penalized: its
    members, and nodes that are members of no task yet (ModelLedger.chargeable)."""
    distinct = sorted({n.lower() for n in nodes})
    return {n for n, ok in zip(distinct, _flags(client, "chargeable", task, distinct), strict=True) if ok}


@dataclass(frozen=True)
class RecordedCharges:
    """The lists a round's commit charged, in the committed (ascending) order, checksummed."""

    missed: list[str]
    penalized: list[str]

    def __bool__(self) -> bool:
        return bool(self.missed or self.penalized)


def recorded_charges(client: ChainClient, task: int, round_number: int) -> RecordedCharges:
    """The missed and penalized nodes the round's commit listed (ChargesRecorded; empty if none): the
    one reader of that event (validators check these lists, chain/settlement.py settles them)."""
    logs = client.logs(client.ledger, "ChargesRecorded", task=task, round=round_number)
    if not logs:
        return RecordedCharges([], [])
    args = logs[-1]["args"]
    return RecordedCharges([str(a) for a in args["missed"]], [str(a) for a in args["penalized"]])


def missed_in(client: ChainClient, task: int, round_number: int) -> set[str]:
    """The nodes (lowercase) the round's commit recorded as missed (charged at once in plain mode, when
    the round settles in verified mode)."""
    return {a.lower() for a in recorded_charges(client, task, round_number).missed}


def penalized_in(client: ChainClient, task: int, round_number: int) -> set[str]:
    """The nodes (lowercase) the round's commit penalized (charged as missed_in says)."""
    return {a.lower() for a in recorded_charges(client, task, round_number).penalized}
