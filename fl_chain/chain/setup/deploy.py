"""Deploy the flchain contracts, wire them together and grant roles."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from fl_chain.chain.client import ChainClient, role_id
from fl_chain.chain.deployment import Deployment
from fl_chain.chain.setup.compile import compile_contracts
from fl_chain.chain.setup.localnode import DEV_MNEMONIC
from fl_chain.errors import FlchainError
from fl_chain.protocol.reputation_model import ReputationParams

# Reputation parameters in fixed-point units of 1e6 (== 1.0), in the contract's struct order:
# (alpha, initialReputation, missDecay, penalty, suspendThreshold); see ReputationParams.
DEFAULT_REPUTATION_PARAMS = ReputationParams().as_tuple()

Account.enable_unaudited_hdwallet_features()


def dev_account(index: int) -> LocalAccount:
    """Account `index` of the development mnemonic that local chains are started with."""
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def _deploy_one(client: ChainClient, admin: LocalAccount, artifact: dict[str, Any], *args: Any) -> str:
    factory = client.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(*args).build_transaction(
        {
            "from": admin.address,
            "nonce": client.w3.eth.get_transaction_count(admin.address, "pending"),
            "gas": 3_000_000,
            "chainId": client.deployment.chain_id,
        }
    )
    receipt = client.send_signed(admin, tx, "deploy")
    return str(receipt["contractAddress"])


def deploy_contracts(
    w3: Web3,
    admin: LocalAccount,
    coordinator: str,
    rpc_url: str,
    backend: str = "external",
    reputation_params: tuple[int, int, int, int, int] = DEFAULT_REPUTATION_PARAMS,
    quorum: int = 1,
) -> Deployment:
    """Deploy NodeRegistry, Reputation, ModelLedger, ValidationQuorum and ReputationCheckpoints; admin is
    registrar, `coordinator` commits rounds and proposes checkpoints."""
    artifacts = compile_contracts()
    if w3.eth.get_balance(admin.address) == 0:
        raise FlchainError(f"deployer {admin.address} has no ether on {rpc_url} to pay for gas")
    deployment = Deployment(
        chain_id=w3.eth.chain_id,
        rpc_url=rpc_url,
        contracts={},
        abis={name: a["abi"] for name, a in artifacts.items()},
        roles={},
        backend=backend,
        deployed_block=w3.eth.block_number,
    )
    # A placeholder client lets us reuse the signing/receipt helper before addresses exist.
    deployment.contracts = {n: "0x" + "00" * 20 for n in artifacts}
    client = ChainClient(w3, deployment)
    registry = _deploy_one(client, admin, artifacts["NodeRegistry"], admin.address)
    reputation = _deploy_one(
        client, admin, artifacts["Reputation"], admin.address, registry, reputation_params
    )
    ledger = _deploy_one(client, admin, artifacts["ModelLedger"], admin.address, reputation)
    validation = _deploy_one(client, admin, artifacts["ValidationQuorum"], admin.address, ledger, quorum)
    checkpoints = _deploy_one(
        client, admin, artifacts["ReputationCheckpoints"], admin.address, ledger, validation, registry
    )
    deployment.contracts = {
        "NodeRegistry": registry,
        "Reputation": reputation,
        "ModelLedger": ledger,
        "ValidationQuorum": validation,
        "ReputationCheckpoints": checkpoints,
    }
    client = ChainClient(w3, deployment)
    coordinator = Web3.to_checksum_address(coordinator)
    client.transact(admin, client.reputation.functions.grantRole(role_id("LEDGER_ROLE"), ledger))
    client.transact(admin, client.reputation.functions.grantRole(role_id("REGISTRY_ROLE"), registry))
    client.transact(admin, client.registry.functions.setStatusHook(reputation))
    client.transact(admin, client.registry.functions.grantRole(role_id("SUSPENDER_ROLE"), reputation))
    client.transact(admin, client.ledger.functions.grantRole(role_id("COORDINATOR_ROLE"), coordinator))
    client.transact(admin, client.registry.functions.grantRole(role_id("SUSPENDER_ROLE"), checkpoints))
    checkpoint_roles = client.checkpoints.functions.grantRole(role_id("COORDINATOR_ROLE"), coordinator)
    client.transact(admin, checkpoint_roles)
    deployment.roles = {
        "admin": admin.address,
        "registrar": admin.address,
        "coordinator": coordinator,
    }
    return deployment
