"""Deploy the flchain contracts already wired together, in five contract creations and nothing else.

Each constructor receives the addresses of the others and grants their roles itself: the deployer's
next CREATE addresses follow from its nonce (keccak(rlp([deployer, nonce]))), so they are known before
anything is sent. There is no wiring transaction after the creations, hence no window in which an
outsider's transaction (a node registering before the registry's status hook is set, say) could lock
or misconfigure the contracts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_canonical_address, to_checksum_address
from web3 import Web3

from fl_chain.chain.client import ChainClient
from fl_chain.chain.deployment import Deployment
from fl_chain.chain.setup.artifacts import load_artifacts
from fl_chain.chain.setup.localnode import DEV_MNEMONIC
from fl_chain.errors import FlchainError
from fl_chain.protocol.fields import is_uint
from fl_chain.protocol.reputation_model import ReputationParams

# Reputation parameters in fixed-point units of 1e6 (== 1.0), in the contract's struct order:
# (alpha, initialReputation, missDecay, penalty, suspendThreshold); see ReputationParams.
DEFAULT_REPUTATION_PARAMS = ReputationParams().as_tuple()
# Seconds after a round's commit during which a node may complain that its update was left out and a
# finalized round may still be disputed (ModelLedger.complaintWindow); after that, finality stands.
DEFAULT_COMPLAINT_WINDOW = 3600
MAX_COMPLAINT_WINDOW = 2**32  # ~136 years: anything longer is a mistake (and could overflow the deadline)
# The order of creation: each contract's address is the deployer's nonce + its index.
CONTRACTS = ("NodeRegistry", "Reputation", "ModelLedger", "ValidationQuorum", "ReputationCheckpoints")

Account.enable_unaudited_hdwallet_features()


def dev_account(index: int) -> LocalAccount:
    """Account `index` of the development mnemonic that local chains are started with."""
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def create_address(deployer: str, nonce: int) -> str:
    """The address a contract created by `deployer` with transaction nonce `nonce` gets (CREATE)."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(deployer), nonce]))[12:])


@dataclass(frozen=True)
class Roles:
    """Who holds which role in a new deployment (addresses)."""

    admin: str
    registrar: str
    coordinator: str

    def as_dict(self) -> dict[str, str]:
        """The deployment file's `roles` field."""
        return {"admin": self.admin, "registrar": self.registrar, "coordinator": self.coordinator}


def _constructor_args(
    at: dict[str, str], roles: Roles, params: tuple[int, ...], quorum: int, complaint_window: int
) -> dict[str, tuple[Any, ...]]:
    """Every contract's constructor arguments, given where each contract will be created."""
    return {
        "NodeRegistry": (
            roles.admin,
            roles.registrar,
            at["Reputation"],
            [at["Reputation"], at["ReputationCheckpoints"]],
        ),
        "Reputation": (roles.admin, at["NodeRegistry"], at["ModelLedger"], params),
        "ModelLedger": (
            roles.admin,
            at["Reputation"],
            roles.coordinator,
            at["ValidationQuorum"],
            complaint_window,
        ),
        "ValidationQuorum": (roles.admin, at["ModelLedger"], quorum),
        "ReputationCheckpoints": (
            roles.admin,
            at["ModelLedger"],
            at["ValidationQuorum"],
            at["NodeRegistry"],
            roles.coordinator,
        ),
    }


def deploy_contracts(
    w3: Web3,
    admin: LocalAccount,
    coordinator: str,
    rpc_url: str,
    backend: str = "external",
    reputation_params: tuple[int, int, int, int, int] = DEFAULT_REPUTATION_PARAMS,
    quorum: int = 1,
    registrar: str | None = None,
    complaint_window: int = DEFAULT_COMPLAINT_WINDOW,
) -> Deployment:
    """Deploy NodeRegistry, Reputation, ModelLedger, ValidationQuorum and ReputationCheckpoints, wired
    and with their roles granted by their constructors: `admin` administers them, `registrar` (default:
    the admin) approves nodes, `coordinator` commits rounds and proposes checkpoints. `complaint_window`:
    seconds after a round's commit that omission complaints and disputes of a finalized round count."""
    if not is_uint(complaint_window, MAX_COMPLAINT_WINDOW):
        raise FlchainError(
            f"complaint window {complaint_window!r} is not a whole number of seconds in "
            f"0..{MAX_COMPLAINT_WINDOW}"
        )
    artifacts = load_artifacts()  # shipped in the package: no compiler needed to deploy
    if w3.eth.get_balance(admin.address) == 0:
        raise FlchainError(f"deployer {admin.address} has no ether on {rpc_url} to pay for gas")
    roles = Roles(
        admin.address,
        Web3.to_checksum_address(registrar or admin.address),
        Web3.to_checksum_address(coordinator),
    )
    deployment = Deployment(
        chain_id=w3.eth.chain_id,
        rpc_url=rpc_url,
        contracts={},
        abis={name: a["abi"] for name, a in artifacts.items()},
        roles=roles.as_dict(),
        backend=backend,
        deployed_block=w3.eth.block_number,
    )
    first = w3.eth.get_transaction_count(admin.address, "pending")
    at = {name: create_address(admin.address, first + i) for i, name in enumerate(CONTRACTS)}
    # The client's signing and receipt helper works before the contracts exist.
    deployment.contracts = dict(at)
    client = ChainClient(w3, deployment)
    arguments = _constructor_args(at, roles, reputation_params, quorum, complaint_window)
    for i, name in enumerate(CONTRACTS):
        factory = w3.eth.contract(abi=artifacts[name]["abi"], bytecode=artifacts[name]["bytecode"])
        creation = factory.constructor(*arguments[name])
        gas = int(creation.estimate_gas({"from": admin.address}) * 1.2)  # constructors call nothing
        tx = creation.build_transaction(
            {"from": admin.address, "nonce": first + i, "gas": gas, "chainId": deployment.chain_id}
        )
        receipt = client.send_signed(admin, tx, f"deploy {name}")
        if receipt["contractAddress"] != at[name]:  # the deployer's key sent something else meanwhile
            raise FlchainError(
                f"deploy {name}: created at {receipt['contractAddress']}, not at {at[name]} (the deployer "
                f"{admin.address} sent another transaction during the deployment): deploy again"
            )
    return deployment
