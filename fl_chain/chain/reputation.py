"""Reputation contract reads: each node's trust value (fixed point, see `fixedpoint.SCALE`)."""

from __future__ import annotations

from collections.abc import Iterable

from web3 import Web3
from web3.contract import Contract
from web3.types import EventData

from fl_chain.chain.client import ChainClient

# Addresses per batched view call: 1,000 cold storage reads cost ~2.2M gas, far below the gas cap nodes
# put on eth_call (anvil and geth: 30M+), and a 32 kB request.
BATCH = 1000


def _cs(address: str) -> str:
    return Web3.to_checksum_address(address)


def has_function(contract: Contract, name: str) -> bool:
    """Whether a contract's ABI (as recorded in its deployment file) has a function of that name."""
    return any(item.get("type") == "function" and item.get("name") == name for item in contract.abi)


def reputation_of(client: ChainClient, address: str) -> int:
    """A node's reputation in fixed point."""
    return int(client.call(client.reputation.functions.reputationOf(Web3.to_checksum_address(address))))


def updates_of(client: ChainClient, address: str) -> int:
    """How many scored rounds a node's reputation has folded in."""
    return int(client.call(client.reputation.functions.updatesOf(Web3.to_checksum_address(address))))


def reputations(client: ChainClient, addresses: Iterable[str]) -> dict[str, int]:
    """Reputation (fixed point) of each address, read with one `reputationsOf` call per `BATCH`
    addresses (the same values as `reputation_of`, in one request however many candidates a round has)."""
    addresses = list(addresses)
    if not has_function(client.reputation, "reputationsOf"):  # a deployment older than the view
        values = client.call_many([client.reputation.functions.reputationOf(_cs(a)) for a in addresses])
        return {a: int(v) for a, v in zip(addresses, values, strict=True)}
    out: dict[str, int] = {}
    for start in range(0, len(addresses), BATCH):
        chunk = addresses[start : start + BATCH]
        fn = client.reputation.functions.reputationsOf([_cs(a) for a in chunk])
        out.update({a: int(v) for a, v in zip(chunk, client.call(fn), strict=True)})
    return out


def parameters(client: ChainClient) -> tuple[int, int, int, int, int]:
    """The contract's parameters (its struct order: alpha, initial, miss decay, penalty, suspend
    threshold), which every off-chain fold uses."""
    return tuple(int(v) for v in client.call(client.reputation.functions.parameters()))


def parameters_at(client: ChainClient, block: int) -> tuple[int, int, int, int, int]:
    """The parameters in effect at `block` (Reputation.parametersAt: the last change made in that block
    or before), with which a commitment-mode round committed in `block` is folded. A deployment older
    than the history is read as it was at that block."""
    if not has_function(client.reputation, "parametersAt"):
        return tuple(int(v) for v in client.call(client.reputation.functions.parameters(), block))
    return tuple(int(v) for v in client.call(client.reputation.functions.parametersAt(block)))


REPLAYED = ("ParametersChanged", "EligibilityChanged", "RoundMissed", "Penalized")


def replay_events(client: ChainClient) -> list[EventData]:
    """Every event that changed a reputation or an eligibility since the deployment (the Reputation
    contract's and the ledger's ContributionRecorded), in chain order."""
    events = [e for name in REPLAYED for e in client.logs(client.reputation, name)]
    events += client.logs(client.ledger, "ContributionRecorded")
    return sorted(events, key=lambda e: (e["blockNumber"], e["logIndex"]))
