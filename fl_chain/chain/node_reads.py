"""What a node reads from the chain before it trains, in one JSON-RPC batch and without web3.

Flower starts a fresh `flwr-clientapp` process for every message a SuperNode handles, so whatever the
flchain mod imports and asks is paid per message: web3 and eth-account cost ~1 s of imports there, and
three view calls are three round trips. The node's questions are few and fixed (which chain, is this
address Active, the task's configHash, the parent round's model hash), so they are encoded here by hand
(4-byte selectors and 32-byte words, the ABI's static layout) and sent as one batch request; the rest of
flchain keeps using web3 (fl_chain/chain/client.py). tests/test_node_reads.py checks every answer
against web3's reading of the same contracts on a real chain.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_hash.auto import keccak

from fl_chain.errors import FlchainError

NODE_STATUS = ("None", "Pending", "Active", "Suspended", "Revoked")
NODE_PATIENCE = 60.0  # seconds a node waits for a restarting chain node before refusing work


@cache
def selector(signature: str) -> bytes:
    """The 4-byte function selector of a Solidity signature such as "statusOf(address)"."""
    return keccak(signature.encode())[:4]


def _word(value: int | str) -> str:
    """One 32-byte ABI word (hex, no 0x) holding an unsigned integer or an address."""
    number = int(value, 16) if isinstance(value, str) else value
    return f"{number:064x}"


def _call(to: str, signature: str, *args: int | str) -> tuple[str, list[Any]]:
    data = "0x" + selector(signature).hex() + "".join(_word(a) for a in args)
    return "eth_call", [{"to": to, "data": data}, "latest"]


@dataclass(frozen=True)
class NodeRoundView:
    """A node's view of one training message: its status, the task's configHash and the parent round's
    model hash (None when the task or the round does not exist on-chain)."""

    status: str
    config_hash: bytes | None
    model_hash: bytes | None


class NodeReads:
    """The node's chain reads: one HTTP request per question set, a one-line error for every failure."""

    def __init__(
        self,
        rpc_url: str,
        chain_id: int,
        registry: str,
        ledger: str,
        source: str,
        timeout: float = 10.0,
        patience: float = NODE_PATIENCE,
    ) -> None:
        if not rpc_url.startswith(("http://", "https://")):
            raise FlchainError(f"RPC URL {rpc_url!r}: expected http://HOST:PORT or https://...")
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.registry = registry
        self.ledger = ledger
        self.source = source  # the deployment file, named in errors
        self.timeout = timeout
        self.patience = patience  # seconds a restarting chain node is waited for before giving up

    def status(self, address: str) -> str:
        """The NodeRegistry status of `address` (None, Pending, Active, Suspended, Revoked)."""
        answers = self._batch([("eth_chainId", []), _call(self.registry, "statusOf(address)", address)])
        self._check_chain(answers[0])
        return self._status(answers[1])

    def round_view(self, address: str, task: int, parent_round: int) -> NodeRoundView:
        """Status, task configHash and parent model hash, in one request."""
        answers = self._batch(
            [
                ("eth_chainId", []),
                _call(self.registry, "statusOf(address)", address),
                _call(self.ledger, "getTask(uint256)", task),
                _call(self.ledger, "getRound(uint256,uint256)", task, parent_round),
            ]
        )
        self._check_chain(answers[0])
        status = self._status(answers[1])
        # getTask returns a struct with a string: an offset word, then owner, nextRound, mode, configHash,
        # rulesHash, the string's offset...
        task_words = self._words(answers[2], self.ledger, "ModelLedger")
        config_hash = task_words[4] if task_words is not None else None
        # getRound returns a static struct: (modelHash, blockNumber, timestamp, participantCount).
        round_words = self._words(answers[3], self.ledger, "ModelLedger")
        model_hash = round_words[0] if round_words is not None else None
        return NodeRoundView(status, config_hash, model_hash)

    def _check_chain(self, answer: dict[str, Any]) -> None:
        chain_id = int(_result(answer, self.rpc_url), 16)
        if chain_id != self.chain_id:
            raise FlchainError(
                f"{self.source} is for chain id {self.chain_id}, but {self.rpc_url} is chain id {chain_id}"
            )

    def _status(self, answer: dict[str, Any]) -> str:
        words = self._words(answer, self.registry, "NodeRegistry")
        if words is None:
            raise FlchainError(f"NodeRegistry at {self.registry} reverted statusOf")
        index = int.from_bytes(words[0], "big")
        if index >= len(NODE_STATUS):
            raise FlchainError(f"NodeRegistry at {self.registry} answered an unknown status {index}")
        return NODE_STATUS[index]

    def _words(self, answer: dict[str, Any], address: str, contract: str) -> list[bytes] | None:
        """The 32-byte words a call returned; None when it reverted (an unknown task or round)."""
        if "error" in answer:
            error = answer["error"]
            if "revert" in str(error.get("message", "")).lower() or "data" in error:
                return None
            message = error.get("message", error)
            raise FlchainError(f"{self.rpc_url}: eth_call to {contract} failed: {message}")
        data = bytes.fromhex(str(answer["result"]).removeprefix("0x"))
        if not data:  # a call to an address without code returns nothing
            raise FlchainError(
                f"no {contract} at {address} on {self.rpc_url}: the chain was restarted or reset since "
                f"{self.source} was written"
            )
        return [data[i : i + 32] for i in range(0, len(data), 32)]

    def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        request = urllib.request.Request(
            self.rpc_url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        answers = self._post(request)
        if not isinstance(answers, list) or len(answers) != len(calls):
            raise FlchainError(f"{self.rpc_url} does not answer JSON-RPC batch requests")
        return sorted(answers, key=lambda a: a.get("id", -1))

    def _post(self, request: urllib.request.Request) -> Any:
        # A chain node that restarts is away for seconds: wait for it (with backoff) rather than refuse
        # the round's work, which would count this node as missing for the chain's outage.
        give_up = time.monotonic() + self.patience
        wait = 0.25
        while True:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except ValueError:
                raise FlchainError(f"{self.rpc_url} did not answer JSON-RPC") from None
            except OSError:
                if time.monotonic() + wait > give_up:
                    raise FlchainError(
                        f"cannot reach the Ethereum node at {self.rpc_url} (is it running? `flchain chain "
                        "up` starts one)"
                    ) from None
                time.sleep(wait)
                wait = min(wait * 2, 5.0)


def _result(answer: dict[str, Any], rpc_url: str) -> str:
    if "error" in answer:
        raise FlchainError(f"{rpc_url}: {answer['error'].get('message', answer['error'])}")
    return str(answer["result"])
