"""A connection to the flchain contracts: send transactions signed locally, read views, and turn
reverts into one-line messages naming the custom error (and the role an account lacks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)
from web3.logs import DISCARD
from web3.types import EventData, TxReceipt

from fl_chain.chain.deployment import Deployment
from fl_chain.chain.node_reads import NODE_STATUS
from fl_chain.chain.patient_http import DEFAULT_PATIENCE, PatientHTTPProvider
from fl_chain.errors import FlchainError
from fl_chain.interrupts import raise_if_stopping

ROLE_NAMES = {
    "0x" + "00" * 32: "DEFAULT_ADMIN_ROLE",
    **{
        "0x" + keccak(text=name).hex(): name
        for name in (
            "REGISTRAR_ROLE",
            "SUSPENDER_ROLE",
            "LEDGER_ROLE",
            "REGISTRY_ROLE",
            "VALIDATOR_ROLE",
            "COORDINATOR_ROLE",
        )
    },
}


class ReceiptTimeout(FlchainError):
    """A transaction was sent but no receipt arrived in time; it may still be mined."""

    def __init__(self, message: str, tx_hash: bytes) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


def role_id(name: str) -> bytes:
    """The bytes32 identifier of a role name."""
    return b"\0" * 32 if name == "DEFAULT_ADMIN_ROLE" else keccak(text=name)


def connect(rpc_url: str, timeout: float = 10.0, patience: float = DEFAULT_PATIENCE) -> Web3:
    """A Web3 connection that has answered once, or a one-line error naming the URL. Later requests
    wait up to `patience` seconds for a node that went away (chain/patient_http.py)."""
    if rpc_url.startswith(("ws://", "wss://")):
        raise FlchainError(f"RPC URL {rpc_url}: use the node's http(s):// endpoint for commands")
    if not rpc_url.startswith(("http://", "https://")):
        raise FlchainError(f"RPC URL {rpc_url!r}: expected http://HOST:PORT or https://...")
    provider = PatientHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, patience=0)
    w3 = Web3(provider)
    # web3's validation middleware asks eth_chainId before every call and transaction, doubling the
    # round trips of a round's commit; open_chain checks the chain id once and every transaction is
    # signed with the deployment's chain id, so the node rejects a transaction for another chain anyway.
    w3.middleware_onion.remove("validation")
    try:
        w3.eth.chain_id  # noqa: B018 - one round trip proves the node answers
    except Exception:
        raise FlchainError(
            f"cannot reach the Ethereum node at {rpc_url} (is it running? `flchain chain up` starts one)"
        ) from None
    provider.patience = patience  # it answered once: from now on a restart is waited out, not fatal
    return w3


class _ErrorDecoder:
    """Maps revert data to `Contract: ErrorName(arg=value, ...)` using the deployed ABIs."""

    def __init__(self, abis: dict[str, list[dict[str, Any]]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis.values():
            for item in abi:
                if item.get("type") != "error":
                    continue
                types = [_abi_type(i) for i in item["inputs"]]
                selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                self._errors[selector] = (item["name"], types, [i["name"] for i in item["inputs"]])

    def describe(self, data: str | bytes | None) -> str:
        if data is None:
            return "reverted without data"
        raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
        if raw[:4] == keccak(text="Error(string)")[:4]:
            return abi_decode(["string"], raw[4:])[0]
        known = self._errors.get(raw[:4])
        if not known:
            return f"reverted with unknown data 0x{raw.hex()}"
        name, types, names = known
        values = abi_decode(types, raw[4:])
        if name == "AccessControlUnauthorizedAccount":
            role = ROLE_NAMES.get("0x" + values[1].hex(), "0x" + values[1].hex())
            return f"account {_show(values[0])} lacks {role} ({name})"
        shown = ", ".join(
            f"{n}={NODE_STATUS[v] if t == 'uint8' and n in ('from', 'to', 'status') else _show(v)}"
            for n, t, v in zip(names, types, values, strict=True)
        )
        return f"{name}({shown})"


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return item["type"]


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and Web3.is_address(value):
        return Web3.to_checksum_address(value)
    return str(value)


class ChainClient:
    """The flchain contracts on one chain, plus a transaction helper."""

    def __init__(self, w3: Web3, deployment: Deployment, poll_latency: float = 0.01) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.poll_latency = poll_latency
        self.registry: Contract = self._contract("NodeRegistry")
        self.reputation: Contract = self._contract("Reputation")
        self.ledger: Contract = self._contract("ModelLedger")
        # Deployments made before the validation quorum existed have no such contract.
        self.validation: Contract | None = (
            self._contract("ValidationQuorum") if "ValidationQuorum" in deployment.contracts else None
        )
        self.checkpoints: Contract | None = (  # commitment mode's reputation; newer deployments only
            self._contract("ReputationCheckpoints")
            if "ReputationCheckpoints" in deployment.contracts
            else None
        )
        self._decoder = _ErrorDecoder(deployment.abis)

    def _contract(self, name: str) -> Contract:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(self.deployment.contracts[name]),
            abi=self.deployment.abis[name],
        )

    def describe_revert(self, exc: Exception) -> str:
        """A one-line description of a revert raised by web3."""
        if isinstance(exc, ContractCustomError):
            return self._decoder.describe(exc.data if isinstance(exc.data, str) else exc.message)
        if isinstance(exc, ContractLogicError):
            data = exc.data
            if isinstance(data, dict):  # ganache puts the revert data under "result"
                data = data.get("result")
            if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
                return self._decoder.describe(data)
            return str(exc.message or exc)
        return str(exc)

    def call(self, fn: ContractFunction, block: int | str = "latest") -> Any:
        """Read a view, turning reverts into FlchainError."""
        try:
            return fn.call(block_identifier=block)
        except (ContractCustomError, ContractLogicError) as exc:
            raise FlchainError(f"{self._fn_name(fn)}: {self.describe_revert(exc)}") from None
        except Web3RPCError as exc:  # e.g. a node that keeps no state for an old block
            raise FlchainError(f"{self._fn_name(fn)} at block {block}: {_rpc_message(exc)}") from None

    def call_many(self, fns: list[ContractFunction], block: int | str = "latest") -> list[Any]:
        """Read several views (at `block`) in one JSON-RPC batch request (one round trip instead of
        len(fns))."""
        if not fns:
            return []
        try:
            with self.w3.batch_requests() as batch:
                for fn in fns:
                    batch.add(fn.call(block_identifier=block))
                return list(batch.execute())
        except (ContractCustomError, ContractLogicError) as exc:
            raise FlchainError(f"{self._fn_name(fns[0])}: {self.describe_revert(exc)}") from None

    def transact(
        self,
        account: LocalAccount,
        fn: ContractFunction,
        gas: int | None = None,
        timeout: float = 120.0,
    ) -> TxReceipt:
        """Sign locally, send, wait for the receipt; a revert becomes a one-line FlchainError.

        Gas is estimated first: that is also where a revert shows its custom error before anything
        is sent. Pass `gas` to skip estimation (ganache's estimateGas is slow).
        """
        sender = account.address
        try:
            if gas is None:
                gas = int(fn.estimate_gas({"from": sender}) * 1.2) + 10_000
            tx = fn.build_transaction(
                {
                    "from": sender,
                    "nonce": self.w3.eth.get_transaction_count(sender, "pending"),
                    "gas": gas,
                    "chainId": self.deployment.chain_id,
                }
            )
        except (ContractCustomError, ContractLogicError) as exc:
            raise FlchainError(f"{self._fn_name(fn)}: {self.describe_revert(exc)}") from None
        except Web3RPCError as exc:
            raise FlchainError(f"{self._fn_name(fn)}: {_rpc_message(exc)}") from None
        return self.send_signed(account, tx, self._fn_name(fn), timeout)

    def send_signed(
        self, account: LocalAccount, tx: dict[str, Any], what: str, timeout: float = 120.0
    ) -> TxReceipt:
        """Sign and send a prepared transaction dict and wait for a successful receipt."""
        signed = account.sign_transaction(tx)
        try:
            tx_hash = self._send_raw(signed.raw_transaction, bytes(signed.hash))
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=timeout, poll_latency=self.poll_latency
            )
        except TimeExhausted:
            raise ReceiptTimeout(f"{what}: no receipt within {timeout:g} s", tx_hash) from None
        except Web3RPCError as exc:
            raise FlchainError(f"{what}: {_rpc_message(exc)}") from None
        if receipt["status"] != 1:
            raise FlchainError(f"{what}: transaction {tx_hash.hex()} reverted")
        return receipt

    def _send_raw(self, raw: bytes, tx_hash: bytes) -> bytes:
        # A send retried after a lost answer meets its own first copy ("already known", or "nonce too
        # low" once mined): the transaction is on its way, so its receipt is waited for, not an error.
        try:
            return bytes(self.w3.eth.send_raw_transaction(raw))
        except Web3RPCError as refused:
            try:
                self.w3.eth.get_transaction(tx_hash)
            except TransactionNotFound:
                raise refused from None  # not a copy of ours: the node's refusal stands
            return tx_hash

    def with_patience(self, seconds: float, report: Callable[[str], None] | None = None) -> ChainClient:
        """A client on its own connection that waits at most `seconds` for a node that went away (for
        a caller that retries longer outages by itself, like the watcher); `report` as in on_outage."""
        provider = self.w3.provider
        if not isinstance(provider, PatientHTTPProvider):
            return self
        own = PatientHTTPProvider(str(provider.endpoint_uri), provider.request_kwargs, patience=seconds)
        own.report = report or provider.report
        w3 = Web3(own)
        w3.middleware_onion.remove("validation")
        return ChainClient(w3, self.deployment, self.poll_latency)

    def on_outage(self, report: Callable[[str], None]) -> None:
        """Where messages about the chain node going away and coming back go (default: stderr)."""
        provider = self.w3.provider
        if isinstance(provider, PatientHTTPProvider):
            provider.report = report

    def fund(self, faucet: LocalAccount, to: str, wei: int) -> None:
        """Send ether from a faucet account (local chains: the development admin)."""
        tx = {
            "from": faucet.address,
            "to": Web3.to_checksum_address(to),
            "value": wei,
            "gas": 21_000,
            "nonce": self.w3.eth.get_transaction_count(faucet.address, "pending"),
            "chainId": self.deployment.chain_id,
            "gasPrice": self.w3.eth.gas_price,
        }
        self.send_signed(faucet, tx, "fund")

    def events(self, contract: Contract, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
        """Decoded `name` events of `contract` in a receipt (other contracts' logs are skipped)."""
        return [dict(e["args"]) for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)]

    def logs(
        self, contract: Contract, name: str, start: int | None = None, end: int | None = None, **filters: Any
    ) -> list[EventData]:
        """`name` events of `contract` from block `start` (default: the deployment's block) to `end`
        (default: the newest), filtered by their arguments."""
        first = self.deployment.deployed_block if start is None else start
        event = contract.events[name]()
        return list(event.get_logs(from_block=first, to_block=end, argument_filters=filters or None))

    def _fn_name(self, fn: ContractFunction) -> str:
        names = {a.lower(): n for n, a in self.deployment.contracts.items()}
        return f"{names.get(str(fn.address).lower(), 'contract')}.{fn.fn_name}"


T = TypeVar("T")


def poll(step: Callable[[], T | None], timeout: float, late: str, interval: float = 0.2) -> T:
    """Call `step` every `interval` seconds until it returns something other than None (returned) or
    raises; a one-line FlchainError saying `late` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        done = step()
        if done is not None:
            return done
        if time.monotonic() > deadline:
            raise FlchainError(late)
        time.sleep(interval)
        raise_if_stopping()


def _rpc_message(exc: Web3RPCError) -> str:
    message = exc.rpc_response.get("error", {}).get("message") if exc.rpc_response else None
    return message or str(exc)


def open_chain(deployment_path: Path, rpc_url: str | None = None) -> ChainClient:
    """Connect to the chain of a deployment file, checking chain id and that the contracts exist."""
    deployment = Deployment.load(deployment_path)
    url = rpc_url or deployment.rpc_url
    w3 = connect(url)
    chain_id = w3.eth.chain_id
    if chain_id != deployment.chain_id:
        raise FlchainError(
            f"{deployment_path} is for chain id {deployment.chain_id}, but {url} is chain id {chain_id}"
        )
    registry = deployment.contracts["NodeRegistry"]
    if not w3.eth.get_code(Web3.to_checksum_address(registry)):
        raise FlchainError(
            f"no NodeRegistry at {registry} on {url}: the chain was restarted or reset since "
            f"{deployment_path} was written; run `flchain chain up` (or `chain deploy`) again"
        )
    return ChainClient(w3, deployment)
