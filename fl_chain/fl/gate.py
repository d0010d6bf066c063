"""The join gate: which connected Flower nodes may take part. A node proves its Ethereum address by
signing a fresh nonce (fl/auth.py); the address must be Active in the NodeRegistry and not in use by
another node. `VerifiedGrid` is the Grid as the wrapped strategy sees it: only the allowed nodes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from web3 import Web3

from fl_chain.chain import registry
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.fl.auth import Challenges
from fl_chain.fl.records import AUTH_MESSAGE_TYPE, AUTH_RECORD
from fl_chain.fl.report import NodeNotice, RunEvents


def short_reason(text: str, limit: int = 300) -> str:
    """The informative line of a client error (Flower wraps them in tracebacks), shortened."""
    wrapped = re.search(r"<class '[\w.]+'>:<'(.*)'>\s*$", str(text), re.DOTALL)
    if wrapped and "\n" not in wrapped.group(1):  # Flower's "<class 'E'>:<'message'>" form
        return wrapped.group(1)[:limit]
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for marker in ("FlchainError: ", "Message: ", "Error: "):
        found = [ln for ln in lines if marker in ln]
        if found:
            line = found[-1].split(marker, 1)[1].strip().rstrip("'>")
            if line:
                return line[:limit]
    return (lines[-1] if lines else "unknown error")[:limit]


class DelegatingGrid(Grid):
    """A Grid that passes everything to another one; subclasses change what they need."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def set_run(self, run) -> None:
        """Delegate."""
        self._grid.set_run(run)

    @property
    def run(self):
        """Delegate."""
        return self._grid.run

    def create_message(self, *args, **kwargs) -> Message:
        """Delegate."""
        return self._grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        """Delegate."""
        return self._grid.get_node_ids()

    def get_nodes(self):
        """Delegate."""
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Delegate."""
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Delegate."""
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Delegate."""
        return self._grid.send_and_receive(messages, timeout=timeout)


class VerifiedGrid(DelegatingGrid):
    """A view of the Grid that only shows nodes allowed to take part."""

    def __init__(self, grid: Grid, allowed: set[int]) -> None:
        super().__init__(grid)
        self._allowed = allowed

    def get_node_ids(self) -> Iterable[int]:
        """Only the allowed nodes that are connected."""
        return [n for n in self._grid.get_node_ids() if n in self._allowed]

    def get_nodes(self):
        """Only the allowed nodes."""
        return [n for n in self._grid.get_nodes() if n.node_id in self._allowed]


class NodeGate:
    """Verifies connected nodes against the registry and remembers the verdicts of this run."""

    def __init__(
        self, client: ChainClient, events: RunEvents | None = None, answer_timeout: float = 60.0
    ) -> None:
        self.client = client
        self.events = events or RunEvents()
        self.answer_timeout = answer_timeout
        self.verified: dict[int, str] = {}  # node id -> Ethereum address
        self.known: dict[int, str] = {}  # every node id -> address it ever proved, verified or not
        self.refused: dict[int, str] = {}  # node id -> reason
        self.round_refused: dict[str, str] = {}  # who -> reason, reset by `start_round`
        self._challenges: Challenges | None = None

    def start_round(self) -> None:
        """Forget the previous round's refusals (the round report lists this round's)."""
        self.round_refused = {}

    def allowed(self, grid: Grid) -> set[int]:
        """Verified nodes that are connected now."""
        connected = set(grid.get_node_ids())
        return {n for n in self.verified if n in connected}

    def wait_for(self, grid: Grid, min_nodes: int, timeout: float) -> set[int]:
        """Authenticate until at least `min_nodes` verified nodes are connected; a one-line error naming
        the refusals if that does not happen within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        self.authenticate(grid)
        while len(self.allowed(grid)) < min_nodes:
            if time.monotonic() > deadline:
                raise FlchainError(
                    f"only {len(self.allowed(grid))} verified active nodes after {timeout:.0f} s, "
                    f"{min_nodes} needed; refused: {self.refused}"
                )
            time.sleep(1.0)
            self.authenticate(grid)
        return self.allowed(grid)

    def authenticate(self, grid: Grid) -> None:
        """Challenge every connected node not yet verified; verified nodes are re-checked on-chain."""
        if self._challenges is None:
            self._challenges = Challenges(self.client.deployment.chain_id, int(grid.run.run_id))
        active = registry.active_of(self.client, list(self.verified.values()))
        for node_id, address in list(self.verified.items()):
            if not active[address]:
                del self.verified[node_id]
                self._refuse(node_id, f"address {address} is no longer active in the NodeRegistry", address)
        pending = [n for n in grid.get_node_ids() if n not in self.verified and self._worth_asking(n)]
        if not pending:
            return
        messages = [self._challenge(node_id) for node_id in pending]
        answered: set[int] = set()
        for reply in grid.send_and_receive(messages, timeout=self.answer_timeout):
            answered.add(reply.metadata.src_node_id)
            self._check_answer(reply.metadata.src_node_id, reply)
        for node_id in set(pending) - answered:
            self._challenges.issue(node_id)  # invalidate the unanswered nonce
            self._refuse(node_id, "no answer to the identity challenge")

    def _worth_asking(self, node_id: int) -> bool:
        # A node that proved an address which is still inactive is not asked again (no message).
        proven = self.known.get(node_id)
        if proven and not registry.is_active(self.client, proven):
            self.round_refused[proven] = self.refused.get(node_id, "not active in the NodeRegistry")
            return False
        return True

    def _challenge(self, node_id: int) -> Message:
        nonce = self._challenges.issue(node_id)
        content = RecordDict({AUTH_RECORD: ConfigRecord({"nonce": nonce})})
        return Message(content=content, message_type=AUTH_MESSAGE_TYPE, dst_node_id=node_id)

    def _check_answer(self, node_id: int, reply: Message) -> None:
        if reply.has_error():
            self._refuse(node_id, f"client error: {short_reason(reply.error.reason)}")
            return
        answer = reply.content.config_records.get(AUTH_RECORD)
        if answer is None or "address" not in answer or "signature" not in answer:
            self._refuse(node_id, "malformed identity answer")
            return
        claimed = answer["address"]
        address, reason = self._challenges.verify(node_id, claimed, answer["signature"])
        if address is None:
            self._refuse(node_id, reason, str(claimed) if reason.startswith("signature is from") else None)
            return
        address = Web3.to_checksum_address(address)
        self.known[node_id] = address
        if not registry.is_active(self.client, address):
            status = registry.status_of(self.client, address)
            self._refuse(
                node_id, f"address {address} is not active in the NodeRegistry (status {status})", address
            )
            return
        bound = [n for n, a in self.verified.items() if a == address and n != node_id]
        if bound:
            self._refuse(node_id, f"address {address} is already in use by node {bound[0]}", address)
            return
        self.verified[node_id] = address
        self.refused.pop(node_id, None)
        self.events.emit(NodeNotice(node_id, "verified", address))

    def _refuse(self, node_id: int, reason: str, address: str | None = None) -> None:
        if self.refused.get(node_id) != reason:  # each verdict is announced once, not every round
            self.events.emit(NodeNotice(node_id, "refused", address or "", reason))
        self.refused[node_id] = reason
        self.round_refused[address or f"node {node_id}"] = reason
