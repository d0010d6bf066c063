"""The join gate: which connected Flower nodes may take part. A node proves its Ethereum address by
signing a fresh nonce (protocol/join.py); the address must be Active in the NodeRegistry and not in use
by another node, and the node is then admitted. `AdmittedGrid` is the Grid as the wrapped strategy sees
it: only the allowed nodes."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from web3 import Web3

from fl_chain.chain import registry
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.protocol.join import Challenges
from fl_chain.wire.records import AUTH_MESSAGE_TYPE, AUTH_RECORD
from fl_chain.wire.report import NodeNotice, RunEvents


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


class AdmittedGrid(DelegatingGrid):
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
    """Admits connected nodes whose join answer checks out against the registry; remembers the verdicts
    of this run.

    By default every connected node is challenged once per run (the first round asks them all). With
    `fraction` set, `wait_for` samples the round instead: about `fraction` of the connected nodes (at
    least `min_nodes`) in a random order (seeded by `seed`, so a run's sampling is reproducible), and
    only sampled nodes not yet admitted are challenged, so neither the handshake nor the registry reads
    of a round grow with the number of connected nodes (the wrapped strategy then takes every node it
    is shown). Registry reads are batched either way:
    one `statusesOf` call per round check, whatever the number of nodes."""

    def __init__(
        self,
        client: ChainClient,
        run_events: RunEvents | None = None,
        answer_timeout: float = 60.0,
        fraction: float | None = None,
        seed: int = 0,
    ) -> None:
        """Verdicts go to `run_events` as NodeNotices; a challenge waits `answer_timeout` seconds."""
        self.client = client
        self.run_events = run_events or RunEvents()
        self.answer_timeout = answer_timeout
        self.fraction = fraction
        self.admitted: dict[int, str] = {}  # node id -> Ethereum address
        self.known: dict[int, str] = {}  # every node id -> address it ever proved, admitted or not
        self.refused: dict[int, str] = {}  # node id -> reason
        self.round_refused: dict[str, str] = {}  # who -> reason, reset by `start_round`
        self._challenges: Challenges | None = None
        self._rng = random.Random(seed)

    def start_round(self) -> None:
        """Forget the previous round's refusals (the round report lists this round's)."""
        self.round_refused = {}

    def allowed(self, grid: Grid) -> set[int]:
        """Admitted nodes that are connected now."""
        connected = set(grid.get_node_ids())
        return {n for n in self.admitted if n in connected}

    def wait_for(self, grid: Grid, min_nodes: int, timeout: float) -> set[int]:
        """Authenticate until at least `min_nodes` admitted nodes are connected (with `fraction`: this
        round's sample of admitted nodes); a one-line error naming the refusals if that does not happen
        within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        pick = self.authenticate if self.fraction is None else self.sample
        chosen = pick(grid, min_nodes)
        while len(chosen) < min_nodes:
            if time.monotonic() > deadline:
                raise FlchainError(
                    f"only {len(chosen)} verified active nodes after {timeout:.0f} s, "
                    f"{min_nodes} needed; refused: {self.refused}"
                )
            time.sleep(1.0)
            chosen = pick(grid, min_nodes)
        return chosen

    def authenticate(self, grid: Grid, min_nodes: int = 0) -> set[int]:
        """Challenge every connected node not yet admitted; admitted nodes are re-checked on-chain.
        Returns the admitted connected nodes."""
        connected = list(grid.get_node_ids())
        self._recheck(list(self.admitted))
        self._admit(grid, [n for n in connected if n not in self.admitted])
        return self.allowed(grid)

    def sample(self, grid: Grid, min_nodes: int) -> set[int]:
        """This round's sample: k = max(min_nodes, int(fraction x connected)) admitted, Active nodes
        drawn in a random order from the connected ones (Flower's FedAvg sizes its sample the same way).
        Only drawn nodes are checked on-chain or challenged; a refused one is replaced by the next."""
        connected = sorted(grid.get_node_ids())
        k = min(len(connected), max(min_nodes, int(len(connected) * (self.fraction or 1.0))))
        order = self._rng.sample(connected, len(connected))
        chosen: set[int] = set()
        position = 0
        while len(chosen) < k and position < len(order):
            drawn = order[position : position + k - len(chosen)]
            position += len(drawn)
            self._recheck([n for n in drawn if n in self.admitted])
            self._admit(grid, [n for n in drawn if n not in self.admitted])
            chosen.update(n for n in drawn if n in self.admitted)
        return chosen

    def _recheck(self, node_ids: list[int]) -> None:
        """Drop admitted nodes whose address is no longer Active (one registry read for all)."""
        if not node_ids:
            return
        statuses = registry.statuses_of(self.client, sorted({self.admitted[n] for n in node_ids}))
        for node_id in node_ids:
            address = self.admitted[node_id]
            if statuses[address] != "Active":
                del self.admitted[node_id]
                self._refuse(node_id, f"address {address} is no longer active in the NodeRegistry", address)

    def _admit(self, grid: Grid, node_ids: list[int]) -> None:
        """Challenge the given nodes not yet admitted (one message each, sent together) and check the
        answers; a node that proved an address which is still inactive is not asked again."""
        if not node_ids:
            return
        if self._challenges is None:
            self._challenges = Challenges(self.client.deployment.chain_id, int(grid.run.run_id))
        proven = sorted({self.known[n] for n in node_ids if n in self.known})
        statuses = registry.statuses_of(self.client, proven) if proven else {}
        pending = []
        for node_id in node_ids:
            address = self.known.get(node_id)
            if address is not None and statuses[address] != "Active":
                self.round_refused[address] = self.refused.get(node_id, "not active in the NodeRegistry")
            else:
                pending.append(node_id)
        if not pending:
            return
        messages = [self._challenge(node_id) for node_id in pending]
        answered: set[int] = set()
        proofs: dict[int, str] = {}
        for reply in grid.send_and_receive(messages, timeout=self.answer_timeout):
            answered.add(reply.metadata.src_node_id)
            address = self._check_answer(reply.metadata.src_node_id, reply)
            if address is not None:
                proofs[reply.metadata.src_node_id] = address
        for node_id in set(pending) - answered:
            self._challenges.issue(node_id)  # invalidate the unanswered nonce
            self._refuse(node_id, "no answer to the identity challenge")
        # One registry read for every valid answer of the batch, not one per node.
        statuses = registry.statuses_of(self.client, sorted(set(proofs.values()))) if proofs else {}
        for node_id, address in sorted(proofs.items()):
            self._accept(node_id, address, statuses[address])

    def _challenge(self, node_id: int) -> Message:
        nonce = self._challenges.issue(node_id)
        content = RecordDict({AUTH_RECORD: ConfigRecord({"nonce": nonce})})
        return Message(content=content, message_type=AUTH_MESSAGE_TYPE, dst_node_id=node_id)

    def _check_answer(self, node_id: int, reply: Message) -> str | None:
        """The address a reply proves, or None (and the node refused)."""
        if reply.has_error():
            self._refuse(node_id, f"client error: {short_reason(reply.error.reason)}")
            return None
        answer = reply.content.config_records.get(AUTH_RECORD)
        if answer is None or "address" not in answer or "signature" not in answer:
            self._refuse(node_id, "malformed identity answer")
            return None
        claimed = answer["address"]
        address, reason = self._challenges.verify(node_id, claimed, answer["signature"])
        if address is None:
            self._refuse(node_id, reason, str(claimed) if reason.startswith("signature is from") else None)
            return None
        address = Web3.to_checksum_address(address)
        self.known[node_id] = address
        return address

    def _accept(self, node_id: int, address: str, status: str) -> None:
        """Admit a node that proved `address`, if that address is Active and not in use already."""
        if status != "Active":
            self._refuse(
                node_id, f"address {address} is not active in the NodeRegistry (status {status})", address
            )
            return
        bound = [n for n, a in self.admitted.items() if a == address and n != node_id]
        if bound:
            self._refuse(node_id, f"address {address} is already in use by node {bound[0]}", address)
            return
        self.admitted[node_id] = address
        self.refused.pop(node_id, None)
        self.run_events.emit(NodeNotice(node_id, "verified", address))

    def _refuse(self, node_id: int, reason: str, address: str | None = None) -> None:
        """Refuse a node (announced once per reason; the round report lists it)."""
        if self.refused.get(node_id) != reason:  # each verdict is announced once, not every round
            self.run_events.emit(NodeNotice(node_id, "refused", address or "", reason))
        self.refused[node_id] = reason
        self.round_refused[address or f"node {node_id}"] = reason
