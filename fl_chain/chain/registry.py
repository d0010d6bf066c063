"""NodeRegistry: who may take part. Every read goes through `ChainClient.call` (reverts become one-line
errors) and every write through `ChainClient.transact`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fl_chain.chain.client import NODE_STATUS, ChainClient
from fl_chain.chain.reputation import has_function

PAGE = 200  # listNodes page size: bounded reads, whatever the number of nodes
REGISTRAR_ACTIONS = ("approve", "suspend", "revoke")
BATCH = 1000  # addresses per statusesOf call (as reputation.BATCH: far below eth_call's gas cap)


@dataclass(frozen=True)
class Capacity:
    """What a node declares when it applies (the contract's Capacity struct)."""

    cores: int
    memory_mb: int
    samples_per_sec: int

    def as_tuple(self) -> tuple[int, int, int]:
        """The contract's struct order."""
        return (self.cores, self.memory_mb, self.samples_per_sec)


@dataclass(frozen=True)
class NodeRecord:
    """A node's registry entry."""

    address: str
    status: str
    capacity: Capacity
    applied_at: int
    endpoint: str


def _address(address: str) -> str:
    return Web3.to_checksum_address(address)


def status_of(client: ChainClient, address: str) -> str:
    """Status name of an address: None, Pending, Active, Suspended or Revoked."""
    return NODE_STATUS[client.call(client.registry.functions.statusOf(_address(address)))]


def statuses_of(client: ChainClient, addresses: list[str], block: int | str = "latest") -> dict[str, str]:
    """Status name of each address at `block`, read with one `statusesOf` call per `BATCH` addresses
    (the same values as `status_of`, in one request however many nodes a round checks); the one way
    flchain reads the status of several nodes, now or as it was before a commit."""
    if not has_function(client.registry, "statusesOf"):  # a deployment older than the view
        fns = [client.registry.functions.statusOf(_address(a)) for a in addresses]
        return {a: NODE_STATUS[v] for a, v in zip(addresses, client.call_many(fns, block), strict=True)}
    out: dict[str, str] = {}
    for start in range(0, len(addresses), BATCH):
        chunk = addresses[start : start + BATCH]
        values = client.call(client.registry.functions.statusesOf([_address(a) for a in chunk]), block)
        out.update({a: NODE_STATUS[v] for a, v in zip(chunk, values, strict=True)})
    return out


def active_of(client: ChainClient, addresses: list[str], block: int | str = "latest") -> dict[str, bool]:
    """Whether each address is Active (at `block`), read in one request (`statuses_of`)."""
    return {a: s == "Active" for a, s in statuses_of(client, addresses, block).items()}


def activated_at(client: ChainClient, addresses: list[str], block: int | str = "latest") -> dict[str, int]:
    """Block of each address's last activation (0 if never Active) as recorded at `block`, read in one
    batch request; all zeros on a deployment older than the record (no reinstatement is then seen)."""
    if not addresses or not has_function(client.registry, "activatedAt"):
        return {a: 0 for a in addresses}
    fns = [client.registry.functions.activatedAt(_address(a)) for a in addresses]
    return {a: int(v) for a, v in zip(addresses, client.call_many(fns, block), strict=True)}


def get_node(client: ChainClient, address: str) -> NodeRecord:
    """The registry entry of an address."""
    status, capacity, applied_at, endpoint = client.call(client.registry.functions.getNode(_address(address)))
    return NodeRecord(_address(address), NODE_STATUS[status], Capacity(*capacity), applied_at, endpoint)


def node_count(client: ChainClient) -> int:
    """Number of addresses that ever applied."""
    return int(client.call(client.registry.functions.nodeCount()))


def list_nodes(client: ChainClient, offset: int, limit: int) -> list[tuple[str, str]]:
    """(address, status) of one page of nodes, in application order."""
    addresses, statuses = client.call(client.registry.functions.listNodes(offset, limit))
    return [(a, NODE_STATUS[s]) for a, s in zip(addresses, statuses, strict=True)]


def iter_nodes(client: ChainClient) -> Iterator[tuple[str, str]]:
    """(address, status) of every node, read page by page."""
    total = node_count(client)
    for offset in range(0, total, PAGE):
        yield from list_nodes(client, offset, PAGE)


def count_by_status(client: ChainClient) -> dict[str, int]:
    """Number of registered nodes per status."""
    counts = dict.fromkeys(NODE_STATUS[1:], 0)
    for _, status in iter_nodes(client):
        counts[status] += 1
    return counts


def register(client: ChainClient, node: LocalAccount, capacity: Capacity, endpoint: str = "") -> TxReceipt:
    """Apply to the registry (status Pending until a registrar approves)."""
    return client.transact(node, client.registry.functions.register(capacity.as_tuple(), endpoint))


def register_with_work(
    client: ChainClient, node: LocalAccount, capacity: Capacity, endpoint: str, nonce: int
) -> TxReceipt:
    """Join at once with a proof of work (registry in open registration)."""
    fn = client.registry.functions.registerWithWork(capacity.as_tuple(), endpoint, nonce)
    return client.transact(node, fn)


def registrar_action(client: ChainClient, registrar: LocalAccount, action: str, address: str) -> TxReceipt:
    """approve / suspend / revoke a node (REGISTRAR_ROLE)."""
    if action not in REGISTRAR_ACTIONS:
        raise ValueError(f"unknown registrar action {action!r}")
    return client.transact(registrar, getattr(client.registry.functions, action)(_address(address)))


def open_registration(client: ChainClient) -> tuple[bool, int]:
    """(open registration on?, proof-of-work target)."""
    fns = client.registry.functions
    return bool(client.call(fns.openRegistration())), int(client.call(fns.powTarget()))


def set_open_registration(client: ChainClient, admin: LocalAccount, is_open: bool, target: int) -> TxReceipt:
    """Switch proof-of-work registration on or off (admin)."""
    return client.transact(admin, client.registry.functions.setOpenRegistration(is_open, target))
