"""Issue 23, points 1 and 6, as attacks on real anvil processes: no development key holds a role on a
chain other machines reach, the file nodes receive holds no private key, a node there is not funded by
the admin, the chain's test-only methods are out of reach, and a registration front-running the
deployment changes nothing."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fl_chain.chain.client import ChainClient, connect, role_id
from fl_chain.chain.deployment import Deployment, dev_keys_path
from fl_chain.chain.identity import load_key, write_keystore
from fl_chain.chain.setup import bootstrap
from fl_chain.chain.setup.artifacts import load_artifacts
from fl_chain.chain.setup.deploy import dev_account
from fl_chain.chain.setup.localnode import ChainProcess, free_port, read_pidfile
from fl_chain.errors import FlchainError
from fl_chain.proctree import pid_alive, stop_pid
from fl_chain.protocol.fixedpoint import SCALE
from tests.chainutil import TEST_CAPACITY, LocalChain, home_with_deployment
from tests.test_cli_chain_node import PASSWORD, assert_one_line_error, cli, flchain

DEV_ADDRESSES = {dev_account(i).address for i in range(20)}  # every account `chain up` starts with
ROLES = {
    "NodeRegistry": ("DEFAULT_ADMIN_ROLE", "REGISTRAR_ROLE"),
    "Reputation": ("DEFAULT_ADMIN_ROLE",),
    "ModelLedger": ("DEFAULT_ADMIN_ROLE", "COORDINATOR_ROLE"),
    "ValidationQuorum": ("DEFAULT_ADMIN_ROLE",),
    "ReputationCheckpoints": ("DEFAULT_ADMIN_ROLE", "COORDINATOR_ROLE"),
}
CAPACITY = TEST_CAPACITY.as_tuple()
HEX32 = re.compile(r"(?<![0-9a-fA-F])(?:0x)?([0-9a-fA-F]{64})(?![0-9a-fA-F])")


def private_keys_in(text: str, holders: set[str]) -> list[str]:
    """Every 32-byte hex string in `text` that is the private key of one of `holders`."""
    found = []
    for match in HEX32.finditer(text):
        try:
            address = Account.from_key("0x" + match.group(1)).address
        except ValueError:  # not a valid secp256k1 key (zero or above the curve order)
            continue
        if address in holders:
            found.append(address)
    return found


@pytest.fixture(scope="module")
def public_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`flchain chain up --host 0.0.0.0` (the README's multi-machine chain) on a free port, detached;
    stopped by `chain down`, or by the PIDs its PID file records if that fails."""
    home = tmp_path_factory.mktemp("public") / "home"
    port = free_port("0.0.0.0")
    up = flchain("chain", "up", "--detach", "--host", "0.0.0.0", "--port", str(port), "--home", str(home))
    try:
        assert up.returncode == 0, up.stderr
        assert PASSWORD not in up.stdout + up.stderr
        yield home
    finally:
        flchain("chain", "down", "--home", str(home))
        recorded = json.loads((home / "chain.json").read_text()) if (home / "chain.json").exists() else {}
        for pid in (recorded.get("gate_pid", 0), recorded.get("pid", 0)):
            if pid and pid_alive(pid):
                stop_pid(pid)


def _public_url(home: Path) -> str:
    """The address other machines use (the deployment's port), reached from here."""
    port = urlsplit(json.loads((home / "deployment.json").read_text())["rpc_url"]).port
    return f"http://127.0.0.1:{port}"


def test_no_development_key_holds_a_role_on_a_chain_other_machines_reach(public_home: Path) -> None:
    """Today `chain up --host 0.0.0.0` makes the public mnemonic's accounts 0 and 1 admin, registrar and
    coordinator: anyone who reads the mnemonic administers the federation."""
    deployment = Deployment.load(public_home / "deployment.json")
    assert deployment.dev_keys == {}
    assert not set(deployment.roles.values()) & DEV_ADDRESSES, deployment.roles
    assert len(set(deployment.roles.values())) == 3  # admin, registrar, coordinator: three keys
    client = ChainClient(connect(_public_url(public_home)), deployment)
    for name, roles in ROLES.items():
        contract = client.w3.eth.contract(address=deployment.contracts[name], abi=deployment.abis[name])
        for role in roles:
            for dev in DEV_ADDRESSES:
                assert not contract.functions.hasRole(role_id(role), dev).call(), (name, role, dev)
    for role, address in deployment.roles.items():
        keystore = public_home / "keys" / f"{role}.json"
        assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
        assert load_key(keystore, PASSWORD).address == address


def test_the_chains_test_methods_are_out_of_reach_of_other_machines(public_home: Path) -> None:
    """Today the public port is anvil itself: `anvil_impersonateAccount` lets anyone send as the admin
    without its key, `anvil_setStorageAt` rewrites any contract, `anvil_reset` wipes the chain."""
    deployment = Deployment.load(public_home / "deployment.json")
    url = _public_url(public_home)
    admin, registry = deployment.roles["admin"], deployment.contracts["NodeRegistry"]
    attacks = [
        ("anvil_impersonateAccount", [admin]),
        ("anvil_setStorageAt", [registry, "0x0", "0x" + "11" * 32]),
        ("anvil_setBalance", [admin, "0x0"]),
        ("anvil_reset", []),
        ("evm_snapshot", []),
        ("eth_sendTransaction", [{"from": dev_account(0).address, "to": admin, "value": "0x1"}]),
    ]
    for method, params in attacks:
        reply = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        ).json()
        assert reply.get("error", {}).get("code") == -32601, (method, reply)
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": m, "params": []}
        for i, m in enumerate(("eth_chainId", "anvil_reset"))
    ]
    assert all("error" in r for r in requests.post(url, json=batch).json())
    chain = read_pidfile(public_home / "chain.json")
    assert chain is not None and chain.host == "127.0.0.1"  # the node itself listens on loopback only
    client = ChainClient(connect(url), deployment)  # what nodes use still works through the gate
    assert client.registry.functions.statusHook().call() == deployment.contracts["Reputation"]
    assert client.w3.eth.get_code(registry)


def test_the_file_nodes_receive_holds_no_private_key(
    public_home: Path, chain: LocalChain, tmp_path: Path
) -> None:
    """Today `deployment.json`, which the README copies to every node, carries `dev_keys`: the admin's,
    the registrar's and the coordinator's private keys."""
    local_home = home_with_deployment(chain, tmp_path)  # what `chain up` on loopback writes
    for home in (public_home, local_home):
        text = (home / "deployment.json").read_text()
        roles = set(json.loads(text)["roles"].values())
        assert "dev_keys" not in text
        assert private_keys_in(text, roles | DEV_ADDRESSES) == []
    # Local commands still find the development keys, in their own 0600 file that is never copied...
    keys_file = dev_keys_path(local_home / "deployment.json")
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert Deployment.load(local_home / "deployment.json").dev_keys["admin"]
    # ...so the copy a node receives is key-free however it is named.
    copy = tmp_path / "node" / "flchain-deployment.json"
    copy.parent.mkdir()
    copy.write_text((local_home / "deployment.json").read_text())
    assert Deployment.load(copy).dev_keys == {}
    # ... and a stray dev-keys file of another deployment is not picked up.
    dev_keys_path(copy).write_text(keys_file.read_text().replace('"chain_id": 31337', '"chain_id": 5'))
    assert Deployment.load(copy).dev_keys == {}


def test_a_node_on_a_shared_chain_pays_its_own_gas(
    public_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today `node apply` on the README's chain tops the node up from the admin's key."""
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", PASSWORD)
    url = _public_url(public_home)
    node_file = tmp_path / "flchain-deployment.json"  # what the README copies to a node
    node_file.write_text((public_home / "deployment.json").read_text())
    key = tmp_path / "node.json"
    address = write_keystore(key, PASSWORD)
    deployment = Deployment.load(node_file)
    w3 = connect(url)
    before = {role: w3.eth.get_balance(a) for role, a in deployment.roles.items()}
    args = ["--deployment", str(node_file), "--rpc", url]
    code, _, err = cli(capsys, "node", "apply", "--key", str(key), "--samples-per-sec", "10", *args)
    assert_one_line_error(code, err, f"account {address} has no ether", "flchain chain fund")
    assert w3.eth.get_balance(address) == 0
    assert {role: w3.eth.get_balance(a) for role, a in deployment.roles.items()} == before
    # The operator sends ether with the admin's keystore; then the node applies, paying its own gas.
    admin_key = str(public_home / "keys" / "admin.json")
    code, _, err = cli(capsys, "chain", "fund", address, "--ether", "0.5", "--key", admin_key, *args)
    assert code == 0, err
    code, out, err = cli(capsys, "node", "apply", "--key", str(key), "--samples-per-sec", "10", *args)
    assert code == 0 and "Pending" in out, err
    assert 0 < w3.eth.get_balance(address) < 5 * 10**17


def test_a_registration_front_running_the_deployment_changes_nothing(
    anvil_process: ChainProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outsider's registration lands after every transaction of the deployment (the first as soon as
    the registry exists). Today the one before `setStatusHook` makes it revert with HookLocked and the
    deployment is bricked; with the contracts wired by their constructors there is no such step."""
    deployer = dev_account(0).address
    outsiders = [dev_account(i) for i in range(10, 20)]
    abi = load_artifacts()["NodeRegistry"]["abi"]
    send_signed = ChainClient.send_signed
    front_run: list[str] = []
    registry: list[str] = []  # the first contract the deployer creates

    def register(client: ChainClient, outsider: LocalAccount) -> None:
        fn = client.w3.eth.contract(address=registry[0], abi=abi).functions.register(CAPACITY, "")
        nonce = client.w3.eth.get_transaction_count(outsider.address)
        fields = {
            "from": outsider.address,
            "nonce": nonce,
            "gas": 300_000,
            "chainId": client.deployment.chain_id,
        }
        signed = outsider.sign_transaction(fn.build_transaction(fields))
        tx_hash = client.w3.eth.send_raw_transaction(signed.raw_transaction)
        assert client.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
        front_run.append(outsider.address)

    def send_then_front_run(
        self: ChainClient, account: LocalAccount, tx: dict, what: str, timeout: float = 120.0
    ) -> TxReceipt:
        receipt = send_signed(self, account, tx, what, timeout)
        if not registry and receipt.get("contractAddress"):
            registry.append(receipt["contractAddress"])
        if account.address == deployer and registry:
            register(self, outsiders[len(front_run)])
        return receipt

    monkeypatch.setattr(ChainClient, "send_signed", send_then_front_run)
    local = bootstrap.deploy_local(anvil_process)
    monkeypatch.undo()
    client = local.client
    assert len(front_run) >= 5  # after the registry's creation and after every later transaction
    assert client.registry.functions.statusHook().call() == client.reputation.address
    # The outsiders are ordinary pending applicants: the registrar approves them, Reputation mirrors
    # it, and a round scoring them commits.
    for address in front_run:
        client.transact(local.admin, client.registry.functions.approve(address))
        assert client.reputation.functions.reputationOf(address).call() > 0
    ledger = client.ledger.functions
    client.transact(local.coordinator, ledger.createTask(b"\x09" * 32, "file:///s/", 0, bytes(32)))
    task = ledger.taskCount().call()
    client.transact(
        local.coordinator, ledger.commitRound(task, 0, b"\x01" * 32, "", b"\0" * 32, [], [], [], [], [])
    )
    participants = sorted(front_run, key=lambda a: int(a, 16))
    scores = [SCALE // 2] * len(participants)
    commit = ledger.commitRound(task, 1, b"\x02" * 32, "", b"\x01" * 32, participants, scores, [], [], [])
    assert client.transact(local.coordinator, commit)["status"] == 1


def test_the_deployment_stops_if_its_key_is_used_meanwhile(
    anvil_process: ChainProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contracts' addresses are computed from the deployer's nonce: if the same key sends anything
    else in the middle, the deployment stops with a one-line error instead of wiring wrong addresses."""
    deployer = dev_account(0)
    send_signed = ChainClient.send_signed
    done: list[int] = []

    def send_then_interfere(
        self: ChainClient, account: LocalAccount, tx: dict, what: str, timeout: float = 120.0
    ) -> TxReceipt:
        receipt = send_signed(self, account, tx, what, timeout)
        if account.address == deployer.address and not done:
            done.append(1)
            self.fund(deployer, deployer.address, 1)  # a transfer taking the deployment's next nonce
        return receipt

    monkeypatch.setattr(ChainClient, "send_signed", send_then_interfere)
    with pytest.raises(FlchainError, match="deploy Reputation"):
        bootstrap.deploy_local(anvil_process)


def test_chain_deploy_grants_each_role_to_its_own_keystore(
    anvil_process: ChainProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Today `chain deploy --key admin.json` makes the admin also the registrar (and, by default, the
    coordinator): one key for every role."""
    monkeypatch.setenv("FLCHAIN_KEY_PASSWORD", PASSWORD)
    keys = {role: tmp_path / f"{role}.json" for role in ("admin", "registrar", "coordinator")}
    addresses = {role: write_keystore(path, PASSWORD) for role, path in keys.items()}
    w3 = connect(anvil_process.rpc_url)
    funder = dev_account(2)
    tx = {"to": addresses["admin"], "value": 10**19, "gas": 21_000, "gasPrice": w3.eth.gas_price}
    tx.update(nonce=w3.eth.get_transaction_count(funder.address), chainId=w3.eth.chain_id)
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction)
    )
    roles = ["--registrar-key", str(keys["registrar"]), "--coordinator-key", str(keys["coordinator"])]
    home = ["--home", str(tmp_path / "home")]
    code, _, err = cli(
        capsys, "chain", "deploy", "--rpc", anvil_process.rpc_url, "--key", str(keys["admin"]), *roles, *home
    )
    assert code == 0, err
    deployment = Deployment.load(tmp_path / "home" / "deployment.json")
    assert deployment.roles == addresses
    client = ChainClient(w3, deployment)
    contracts = {"registry": client.registry, "ledger": client.ledger, "checkpoints": client.checkpoints}
    has = {
        (name, role, who): contract.functions.hasRole(role_id(role), address).call()
        for name, contract in contracts.items()
        for role in ("REGISTRAR_ROLE", "COORDINATOR_ROLE", "DEFAULT_ADMIN_ROLE")
        for who, address in addresses.items()
    }
    granted = {key for key, yes in has.items() if yes}
    assert granted == {
        ("registry", "DEFAULT_ADMIN_ROLE", "admin"),
        ("registry", "REGISTRAR_ROLE", "registrar"),
        ("ledger", "DEFAULT_ADMIN_ROLE", "admin"),
        ("ledger", "COORDINATOR_ROLE", "coordinator"),
        ("checkpoints", "DEFAULT_ADMIN_ROLE", "admin"),
        ("checkpoints", "COORDINATOR_ROLE", "coordinator"),
    }
    assert not dev_keys_path(tmp_path / "home" / "deployment.json").exists()
    assert os.environ["FLCHAIN_KEY_PASSWORD"] not in (tmp_path / "home" / "deployment.json").read_text()
