"""A local chain that other machines reach (`flchain chain up --host <not loopback>`).

The development mnemonic's keys are public, so on such a chain they hold no role: the admin, the
registrar and the coordinator are fresh keys kept in encrypted keystores under HOME/keys (created on the
first start, reused afterwards), funded once from the development accounts, which do nothing else. The
node itself listens on loopback only and the RPC gate (rpc_gate.py) is its public face. No dev-keys file
is written, so nothing funds nodes automatically: each pays its own gas."""

from __future__ import annotations

from pathlib import Path

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fl_chain import watchdog
from fl_chain.chain.identity import load_key, write_keystore
from fl_chain.chain.setup.deploy import dev_account
from fl_chain.chain.setup.localnode import ChainProcess, wait_for_rpc
from fl_chain.chain.setup.rpc_gate import start_gate
from fl_chain.errors import FlchainError

ROLE_NAMES = ("admin", "registrar", "coordinator")
KEYS_DIR = "keys"
ROLE_FUNDS_WEI = 1000 * 10**18  # gas money for the admin, the registrar and a long run's commits


def role_keystore(home: Path, role: str) -> Path:
    """Where the keystore of `role` of a chain started from `home` lives."""
    return home / KEYS_DIR / f"{role}.json"


def role_accounts(home: Path, password: str, create: bool) -> dict[str, LocalAccount]:
    """The admin, registrar and coordinator keys from HOME/keys, decrypted with `password`; missing
    keystores are created when `create` (a fresh deployment), else a one-line error."""
    if not password:
        raise FlchainError(
            "a chain reachable from other machines gets its own admin, registrar and coordinator "
            "keystores: set FLCHAIN_KEY_PASSWORD (or answer the prompt) to encrypt them"
        )
    accounts = {}
    for role in ROLE_NAMES:
        path = role_keystore(home, role)
        if not path.exists():
            if not create:
                raise FlchainError(f"{path} not found: it holds the {role} role of this chain's deployment")
            write_keystore(path, password)
        accounts[role] = load_key(path, password)
    return accounts


def check_roles(accounts: dict[str, LocalAccount], roles: dict[str, str], keys_dir: Path) -> None:
    """A one-line error if the keystores are not the accounts holding the deployment's roles."""
    for role, account in accounts.items():
        if roles.get(role, "").lower() != account.address.lower():
            raise FlchainError(
                f"{keys_dir / (role + '.json')} holds {account.address}, but the deployment's {role} is "
                f"{roles.get(role)}: restore that keystore or start afresh without --state"
            )


def fund_roles(w3: Web3, accounts: dict[str, LocalAccount]) -> None:
    """Send each role account its gas money from development account 0 (before anyone else reaches the
    chain: the gate is not open yet)."""
    faucet = dev_account(0)
    nonce = w3.eth.get_transaction_count(faucet.address, "pending")
    fields = {"value": ROLE_FUNDS_WEI, "gas": 21_000, "gasPrice": w3.eth.gas_price}
    fields["chainId"] = w3.eth.chain_id
    sent = []
    for i, account in enumerate(accounts.values()):
        tx = {**fields, "to": account.address, "nonce": nonce + i}
        sent.append(w3.eth.send_raw_transaction(faucet.sign_transaction(tx).raw_transaction))
    for tx_hash in sent:
        if w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.01)["status"] != 1:
            raise FlchainError(f"funding the role accounts: transaction 0x{bytes(tx_hash).hex()} failed")


def open_gate(process: ChainProcess, host: str, port: int, home: Path, detach: bool) -> None:
    """Start the RPC gate on host:port in front of the (loopback) chain, record it in `process` and wait
    until it answers; it is stopped with the chain (ChainProcess.stop)."""
    pid = start_gate(host, port, process.rpc_url, home / "rpc-gate.log", detach)
    if not detach:  # like the chain: a foreground gate dies with the command, however it dies
        watchdog.watch(pid)
    process.gate_pid, process.public_host, process.public_port = pid, host, port
    wait_for_rpc(process.public_url)
