"""A node joining the registry: gas money on local chains, a declared capacity, and either a plain
application (a registrar approves it) or a proof of work (active at once, registry in open registration)."""

from __future__ import annotations

from collections.abc import Callable

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fl_chain.chain import registry
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.protocol.pow import difficulty_of, mine

GAS_ALLOWANCE_WEI = 10**18  # what a local chain's faucet gives a new node for its transactions


def ensure_gas(client: ChainClient, address: str) -> None:
    """On a local chain, top up a new node from the development faucet; elsewhere, explain."""
    if client.w3.eth.get_balance(address) > 0:
        return
    faucet = client.deployment.dev_keys.get("admin")
    if not faucet:
        raise FlchainError(f"account {address} has no ether to pay for gas on {client.deployment.rpc_url}")
    client.fund(Account.from_key(faucet), address, GAS_ALLOWANCE_WEI)


def proof_difficulty(client: ChainClient) -> tuple[int, float]:
    """(target, expected hashes) of a registration proof; a one-line error if registration is closed."""
    is_open, target = registry.open_registration(client)
    if not is_open:
        raise FlchainError(
            "open registration is off on this registry: apply without --pow and ask the registrar"
        )
    return target, difficulty_of(target)


def apply(
    client: ChainClient,
    node: LocalAccount,
    capacity: registry.Capacity,
    endpoint: str = "",
    proof_of_work: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[TxReceipt, int]:
    """Apply (or, with `proof_of_work`, mine a proof and join at once); returns (receipt, hashes tried)."""
    if not 0 < capacity.cores < 2**16:
        raise FlchainError(f"--cores {capacity.cores}: expected 1..65535")
    if not proof_of_work:
        ensure_gas(client, node.address)
        return registry.register(client, node, capacity, endpoint), 0
    target, _ = proof_difficulty(client)
    nonce, tried = mine(
        client.deployment.chain_id, client.registry.address, node.address, target, progress=progress
    )
    ensure_gas(client, node.address)
    return registry.register_with_work(client, node, capacity, endpoint, nonce), tried
