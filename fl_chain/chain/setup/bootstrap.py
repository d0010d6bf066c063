"""A local federation's chain in one call: start anvil or ganache, deploy the contracts with the
development keys (admin = registrar = account 0, coordinator = account 1) and, for demos, tests and
benches, register funded node keys. Used by `flchain chain up`, `flchain demo`, the tests and the
benches, so there is one way to do it. A chain other machines reach is set up by public_chain.py
instead: fresh role keystores, the node on loopback behind the RPC gate."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3RPCError

from fl_chain.chain import quorum, registry
from fl_chain.chain.client import ChainClient, connect
from fl_chain.chain.deployment import DEPLOYMENT_FILE, Deployment
from fl_chain.chain.setup import public_chain
from fl_chain.chain.setup.deploy import DEFAULT_COMPLAINT_WINDOW, deploy_contracts, dev_account
from fl_chain.chain.setup.localnode import ChainProcess, free_port, port_in_use, start_chain
from fl_chain.errors import FlchainError
from fl_chain.netaddr import is_loopback
from fl_chain.protocol.reputation_model import ReputationParams

NODE_FUNDS_WEI = 10**17  # enough gas money for a node's registration and a long run
DEMO_CAPACITY = registry.Capacity(1, 1024, 0)


def hex_key(account: LocalAccount) -> str:
    """0x-prefixed private key of an account."""
    return "0x" + account.key.hex().removeprefix("0x")


@dataclass
class LocalDeployment:
    """A chain process this program started, the contracts on it and its development accounts."""

    process: ChainProcess
    client: ChainClient
    admin: LocalAccount
    coordinator: LocalAccount
    resumed: bool = False  # the chain was loaded from a state file holding this deployment

    def stop(self) -> None:
        """Stop the chain process by its PID (and remove the states it persisted)."""
        self.process.stop()


def deploy_local(
    process: ChainProcess,
    reputation_params: ReputationParams | None = None,
    quorum: int = 1,
    save_to: Path | None = None,
    complaint_window: int = DEFAULT_COMPLAINT_WINDOW,
) -> LocalDeployment:
    """Deploy the contracts onto a running loopback chain with the development keys, which are kept in
    the deployment's separate dev-keys file (written beside `save_to` if given), never in the file."""
    if process.gate_pid or not is_loopback(process.host):
        raise FlchainError("development keys hold roles only on a loopback chain")
    w3 = connect(process.rpc_url)
    admin, coordinator = dev_account(0), dev_account(1)
    params = (reputation_params or ReputationParams()).as_tuple()
    deployment: Deployment = deploy_contracts(
        w3,
        admin,
        coordinator.address,
        process.rpc_url,
        process.backend,
        params,
        quorum,
        complaint_window=complaint_window,
    )
    deployment.dev_keys = {
        "admin": hex_key(admin),
        "registrar": hex_key(admin),
        "coordinator": hex_key(coordinator),
    }
    if save_to is not None:
        deployment.save(save_to)
    return LocalDeployment(process, ChainClient(w3, deployment), admin, coordinator)


def _deploy_public(
    process: ChainProcess,
    home: Path,
    password: str | None,
    reputation_params: ReputationParams | None,
    public_url: str,
) -> LocalDeployment:
    """Deploy onto a chain other machines will reach (its gate not open yet) with fresh role keystores
    under HOME/keys, funded by the development accounts; writes HOME's key-free deployment file."""
    accounts = public_chain.role_accounts(home, password or "", create=True)
    w3 = connect(process.rpc_url)
    public_chain.fund_roles(w3, accounts)
    params = (reputation_params or ReputationParams()).as_tuple()
    admin, coordinator = accounts["admin"], accounts["coordinator"]
    registrar = accounts["registrar"].address
    deployment = deploy_contracts(
        w3, admin, coordinator.address, public_url, process.backend, params, registrar=registrar
    )
    deployment.save(home / DEPLOYMENT_FILE)
    return LocalDeployment(process, ChainClient(w3, deployment), admin, coordinator)


def start_local(
    home: Path,
    backend: str = "anvil",
    port: int | None = None,
    host: str = "127.0.0.1",
    block_time: float | None = None,
    detach: bool = False,
    reputation_params: ReputationParams | None = None,
    state: Path | None = None,
    role_password: str | None = None,
) -> LocalDeployment:
    """Start a chain (on a free port unless given), deploy, and write HOME/deployment.json; the chain is
    stopped again if anything after its start fails. With `state` (anvil) the chain is kept in that
    file across restarts: when it already holds HOME's deployment, nothing is deployed again.
    On a host other machines reach, the roles are held by keystores under HOME/keys encrypted with
    `role_password` (public_chain.py) and the chain answers them only through the RPC gate."""
    resuming = state is not None and state.is_file() and (home / DEPLOYMENT_FILE).is_file()
    public = not is_loopback(host)
    port = port or free_port(host)
    if public and port_in_use(port, host):
        raise FlchainError(f"port {port} on {host} is already in use: choose another with --port")
    chain_host, chain_port = ("127.0.0.1", free_port()) if public else (host, port)
    process = start_chain(
        backend, chain_port, home / "chain.log", chain_host, block_time, detach=detach, state=state
    )
    public_url = f"http://{host}:{port}"
    try:
        if resuming:
            local = _resume_local(process, home / DEPLOYMENT_FILE, state, public_url, role_password)
        elif public:
            local = _deploy_public(process, home, role_password, reputation_params, public_url)
        else:
            local = deploy_local(process, reputation_params, save_to=home / DEPLOYMENT_FILE)
        if public:  # opened only now: nobody else reached the chain while it was being set up
            public_chain.open_gate(process, host, port, home, detach)
        return local
    except BaseException:
        process.stop()
        raise


def _resume_local(
    process: ChainProcess, deployment_path: Path, state: Path, public_url: str, password: str | None
) -> LocalDeployment:
    deployment = Deployment.load(deployment_path)
    w3 = connect(process.rpc_url)
    registry_address = Web3.to_checksum_address(deployment.contracts["NodeRegistry"])
    if w3.eth.chain_id != deployment.chain_id or not w3.eth.get_code(registry_address):
        raise FlchainError(
            f"{state} does not hold the contracts of {deployment_path}: start with another --state "
            "file (or remove it to deploy afresh)"
        )
    if not is_loopback(urlsplit(public_url).hostname or ""):  # its roles are HOME's keystores
        accounts = public_chain.role_accounts(deployment_path.parent, password or "", create=False)
        public_chain.check_roles(accounts, deployment.roles, deployment_path.parent / public_chain.KEYS_DIR)
        admin, coordinator = accounts["admin"], accounts["coordinator"]
    elif deployment.dev_keys:
        admin, coordinator = dev_account(0), dev_account(1)
    else:
        raise FlchainError(
            f"{deployment_path} was deployed for other machines (its roles are keystores under "
            f"{deployment_path.parent / public_chain.KEYS_DIR}): start it again with the same --host"
        )
    # Saved again: the port may have changed (nodes read the file), and a file written before the
    # development keys moved to their own file loses them here.
    deployment.rpc_url = public_url
    deployment.save(deployment_path)
    return LocalDeployment(process, ChainClient(w3, deployment), admin, coordinator, resumed=True)


def register_nodes(
    client: ChainClient,
    count: int,
    approve: bool = True,
    capacity: registry.Capacity = DEMO_CAPACITY,
    funds: int = NODE_FUNDS_WEI,
    progress: Callable[[int, int], None] | None = None,
) -> list[LocalAccount]:
    """New node keys, funded from the development faucet, registered and (by default) approved;
    sorted by address (the order the ledger lists participants in). Transactions go out in batches of
    `REGISTER_BATCH` with explicit nonces and the receipts are collected after each batch (a receipt
    wait per transaction made 1,000 nodes take minutes); `progress(done, count)` after each batch."""
    admin = Account.from_key(client.deployment.dev_keys["admin"])
    nodes = sorted(
        (Account.from_key(secrets.token_bytes(32)) for _ in range(count)), key=lambda a: int(a.address, 16)
    )
    if not nodes:
        return nodes
    fields = {"chainId": client.deployment.chain_id, "gasPrice": client.w3.eth.gas_price}
    register_gas, approve_gas = _register_first(client, admin, nodes[0], capacity, funds, approve)
    for start in range(1, count, REGISTER_BATCH):
        batch = nodes[start : start + REGISTER_BATCH]
        _fund_batch(client, admin, batch, funds, fields)
        _apply_batch(client, batch, capacity, fields, register_gas)
        if approve:
            _approve_batch(client, admin, batch, fields, approve_gas)
        if progress is not None:
            progress(start + len(batch), count)
    return nodes


def _register_first(
    client: ChainClient,
    admin: LocalAccount,
    first: LocalAccount,
    capacity: registry.Capacity,
    funds: int,
    approve: bool,
) -> tuple[int, int]:
    """Fund, register and (if `approve`) approve the first node one transaction at a time; the gas of
    its register and approve (0 without approval), estimated on the way, for the other nodes.
    Estimated once per kind and reused with a margin: every node's register and approve touch the same
    slots, and estimateGas is the slow call."""
    client.fund(admin, first.address, funds)
    register_gas = _estimate(client, first, client.registry.functions.register(capacity.as_tuple(), ""))
    registry.register(client, first, capacity)
    approve_gas = 0
    if approve:
        approve_gas = _estimate(client, admin, client.registry.functions.approve(first.address))
        registry.registrar_action(client, admin, "approve", first.address)
    return register_gas, approve_gas


def _fund_batch(
    client: ChainClient, admin: LocalAccount, batch: list[LocalAccount], funds: int, fields: dict
) -> None:
    """Send every node of the batch its gas money from the admin, with consecutive nonces."""
    nonce = client.w3.eth.get_transaction_count(admin.address, "pending")
    funding = [
        {**fields, "to": n.address, "value": funds, "gas": 21_000, "nonce": nonce + i}
        for i, n in enumerate(batch)
    ]
    _send_all(client, [(admin, tx, f"fund {n.address}") for n, tx in zip(batch, funding, strict=True)])


def _apply_batch(
    client: ChainClient, batch: list[LocalAccount], capacity: registry.Capacity, fields: dict, gas: int
) -> None:
    """Every node of the batch applies to the registry."""
    applications = [
        (
            n,
            client.registry.functions.register(capacity.as_tuple(), "").build_transaction(
                # a key made above: its first transaction, nonce 0
                {**fields, "from": n.address, "nonce": 0, "gas": gas}
            ),
            f"register {n.address}",
        )
        for n in batch
    ]
    _send_all(client, applications)


def _approve_batch(
    client: ChainClient, admin: LocalAccount, batch: list[LocalAccount], fields: dict, gas: int
) -> None:
    """The admin (the local chain's registrar) approves every node of the batch."""
    nonce = client.w3.eth.get_transaction_count(admin.address, "pending")
    approvals = [
        (
            admin,
            client.registry.functions.approve(n.address).build_transaction(
                {**fields, "from": admin.address, "nonce": nonce + i, "gas": gas}
            ),
            f"approve {n.address}",
        )
        for i, n in enumerate(batch)
    ]
    _send_all(client, approvals)


REGISTER_BATCH = 100  # transactions sent before their receipts are collected


def _estimate(client: ChainClient, account: LocalAccount, fn: ContractFunction) -> int:
    """Gas for `fn` sent by `account`, with a margin; a revert is a one-line error."""
    try:
        return int(fn.estimate_gas({"from": account.address}) * 1.3) + 10_000
    except (ContractCustomError, ContractLogicError) as exc:
        raise FlchainError(f"estimating {fn.fn_name}: {client.describe_revert(exc)}") from None


def _send_all(client: ChainClient, items: list[tuple[LocalAccount, dict, str]]) -> None:
    """Sign and send every transaction, then wait for all receipts; the first failure is a one-line
    error naming what it was for."""
    sent = []
    for account, tx, what in items:
        signed = account.sign_transaction(tx)
        try:
            sent.append((client.w3.eth.send_raw_transaction(signed.raw_transaction), what))
        except Web3RPCError as exc:
            raise FlchainError(f"{what}: {exc}") from None
    for tx_hash, what in sent:
        try:
            receipt = client.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=120, poll_latency=client.poll_latency
            )
        except TimeExhausted:
            raise FlchainError(f"{what}: no receipt within 120 s") from None
        if receipt["status"] != 1:
            raise FlchainError(f"{what}: transaction 0x{bytes(tx_hash).hex()} reverted")


def new_validators(client: ChainClient, count: int, funds: int = NODE_FUNDS_WEI) -> list[LocalAccount]:
    """New validator keys, funded from the development faucet and granted VALIDATOR_ROLE by the
    deployment's admin (local chains: the admin's key is in the deployment file)."""
    admin = Account.from_key(client.deployment.dev_keys["admin"])
    accounts = []
    for _ in range(count):
        account = Account.create()
        client.fund(admin, account.address, funds)
        quorum.set_validator(client, admin, account.address)
        accounts.append(account)
    return accounts
