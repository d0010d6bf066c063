"""A node joining the registry: gas money on local development chains, a declared capacity, and either a
plain application (a registrar approves it) or a proof of work (active at once, registry in open
registration). On any other chain a node pays its own gas: nobody's key funds it automatically."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fl_chain.chain import registry
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.netaddr import is_loopback
from fl_chain.protocol.pow import difficulty_of, mine

GAS_ALLOWANCE_WEI = 10**18  # what a local chain's faucet gives a new node for its transactions


def _endpoint(client: ChainClient) -> str:
    """The RPC URL the client actually talks to (a command's --rpc may override the deployment's)."""
    return str(getattr(client.w3.provider, "endpoint_uri", "") or client.deployment.rpc_url)


def development_faucet(client: ChainClient) -> LocalAccount | None:
    """The development admin that funds new accounts, only on a development chain this machine started
    on loopback (its dev keys are in the local dev-keys file) and reached over loopback; else None."""
    faucet = client.deployment.dev_keys.get("admin")
    if not faucet or not is_loopback(urlsplit(_endpoint(client)).hostname or ""):
        return None
    return Account.from_key(faucet)


def ensure_gas(client: ChainClient, address: str) -> None:
    """On a loopback development chain, top up a new account from the development faucet; elsewhere an
    account without ether is a one-line error (it pays its own gas)."""
    if client.w3.eth.get_balance(address) > 0:
        return
    faucet = development_faucet(client)
    if faucet is None:
        raise FlchainError(
            f"account {address} has no ether to pay for gas on {_endpoint(client)}: on a shared "
            "chain each node pays its own gas; ask the chain's operator to send some "
            f"(`flchain chain fund {address} --key ADMIN_KEYSTORE`)"
        )
    client.fund(faucet, address, GAS_ALLOWANCE_WEI)


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
    ensure_gas(client, node.address)  # before mining: a node without gas learns it at once
    nonce, tried = mine(
        client.deployment.chain_id, client.registry.address, node.address, target, progress=progress
    )
    return registry.register_with_work(client, node, capacity, endpoint, nonce), tried
