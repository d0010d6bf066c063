"""The join gate: which connected Flower nodes may take part. A node proves its Ethereum address by
signing a fresh nonce (protocol/join.py); the address must be Active in the NodeRegistry, and the node is
then admitted (a node that proves the address of an admitted one under a new Flower node id replaces it).
Challenges never hold a round (coordinator/join_schedule.py). `AdmittedGrid` is the Grid as the wrapped
strategy sees it: only the allowed nodes."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from web3 import Web3

from fl_chain.chain import registry
from fl_chain.chain.client import ChainClient
from fl_chain.coordinator.join_schedule import ChallengeBook, JoinPolicy, Patience
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

    Challenges are pushed, and answers pulled whenever the gate looks (join_schedule.py): a round waits
    only while it has fewer than `min_nodes` admitted nodes, then gives the others it challenged
    `straggler_factor` x the time that took; later answers count in a later round. Failed or expired
    challenges back their node off. A node proving an admitted address under a new Flower node id (a
    restarted SuperNode) takes it over; the old id is dropped and never challenged again.

    By default every connected node is challenged once per run. With `fraction` set, `wait_for` samples
    the round instead: about `fraction` of the connected nodes (at least `min_nodes`) in a random order
    (seeded by `seed`, so a run's sampling is reproducible), and only sampled nodes not yet admitted are
    challenged, so neither the handshake nor the registry reads of a round grow with the number of
    connected nodes (the wrapped strategy then takes every node it is shown). Registry reads are
    batched either way: one `statusesOf` call per round check, whatever the number of nodes."""

    def __init__(
        self,
        client: ChainClient,
        run_events: RunEvents | None = None,
        answer_timeout: float = 60.0,
        fraction: float | None = None,
        seed: int = 0,
        policy: JoinPolicy | None = None,
    ) -> None:
        """Verdicts go to `run_events` as NodeNotices; a challenge lives `answer_timeout` seconds
        (`policy`, if given, sets that and the rest of the join timing)."""
        self.client = client
        self.run_events = run_events or RunEvents()
        self.policy = policy or JoinPolicy(answer_timeout=answer_timeout)
        self.fraction = fraction
        self.book = ChallengeBook(self.policy)
        self.admitted: dict[int, str] = {}  # node id -> Ethereum address
        self.known: dict[int, str] = {}  # every node id -> address it ever proved, admitted or not
        self.refused: dict[int, str] = {}  # node id -> reason
        self.round_refused: dict[str, str] = {}  # who -> reason, reset by `start_round`
        self._challenges: Challenges | None = None
        self.join_task = 0  # the task join statements name (0: none yet); the round pipeline sets it
        self._rng = random.Random(seed)

    def start_round(self) -> None:
        """Forget the previous round's refusals (the round report lists this round's)."""
        self.round_refused = {}

    def allowed(self, grid: Grid) -> set[int]:
        """Admitted nodes that are connected now."""
        connected = set(grid.get_node_ids())
        return {n for n in self.admitted if n in connected}

    def wait_for(
        self,
        grid: Grid,
        min_nodes: int,
        timeout: float,
        usable: Callable[[set[int]], set[int]] | None = None,
    ) -> set[int]:
        """Authenticate until at least `min_nodes` admitted nodes are connected (with `fraction`: this
        round's sample of admitted nodes) and pass `usable` (the round's own exclusions, e.g. nodes that
        owe a reply); a one-line error naming the refusals if that does not happen within `timeout`
        seconds. Counting after `usable` matters: a restarted node's old id still looks connected for a
        while, and counting it would let a round start with fewer nodes than it needs."""
        deadline = time.monotonic() + timeout
        keep = usable or (lambda nodes: nodes)
        pick = self.authenticate if self.fraction is None else self.sample
        chosen = keep(pick(grid, min_nodes, keep))
        while len(chosen) < min_nodes:
            if time.monotonic() > deadline:
                raise FlchainError(
                    f"only {len(chosen)} verified active nodes after {timeout:.0f} s, "
                    f"{min_nodes} needed; refused: {self.refused}"
                )
            time.sleep(self.policy.poll)
            chosen = keep(pick(grid, min_nodes, keep))
        return chosen

    def authenticate(
        self, grid: Grid, min_nodes: int = 0, usable: Callable[[set[int]], set[int]] | None = None
    ) -> set[int]:
        """Take in the answers that arrived, re-check admitted nodes on-chain and challenge connected
        nodes that may be asked; wait for answers only if fewer than `min_nodes` admitted nodes (that
        pass `usable`) are connected. Returns the admitted connected nodes."""
        keep = usable or (lambda nodes: nodes)
        self._collect(grid)
        self._recheck(list(self.admitted))
        short = len(keep(self.allowed(grid))) < min_nodes
        asked = self._ask(grid, [n for n in grid.get_node_ids() if n not in self.admitted])
        if short and asked:
            self._await(grid, asked, lambda: len(keep(self.allowed(grid))) >= min_nodes)
        return self.allowed(grid)

    def sample(
        self, grid: Grid, min_nodes: int, usable: Callable[[set[int]], set[int]] | None = None
    ) -> set[int]:
        """This round's sample: k = max(min_nodes, int(fraction x connected)) admitted, Active nodes
        drawn in a random order from the connected ones (Flower's FedAvg sizes its sample the same way).
        Only drawn nodes are checked on-chain or challenged; one not admitted is replaced by the next."""
        self._collect(grid)
        connected = sorted(grid.get_node_ids())
        k = min(len(connected), max(min_nodes, int(len(connected) * (self.fraction or 1.0))))
        order = self._rng.sample(connected, len(connected))
        chosen: set[int] = set()
        position = 0
        while len(chosen) < k and position < len(order):
            drawn = order[position : position + k - len(chosen)]
            position += len(drawn)
            self._recheck([n for n in drawn if n in self.admitted])
            asked = self._ask(grid, [n for n in drawn if n not in self.admitted])
            if asked:  # once one of them answered, the others get the straggler's grace
                self._await(grid, asked, lambda asked=asked: bool(asked - self.book.open_nodes()))
            admitted = {n for n in drawn if n in self.admitted}
            chosen.update(usable(admitted) if usable else admitted)
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

    def _ask(self, grid: Grid, node_ids: list[int]) -> set[int]:
        """Push a challenge to each of these nodes that may be asked now (one message each, sent
        together); a node that proved an address which is still inactive is not asked again. Returns
        the nodes challenged."""
        if not node_ids:
            return set()
        if self._challenges is None:
            self._challenges = Challenges(
                self.client.deployment.chain_id, int(grid.run.run_id), str(self.client.ledger.address)
            )
        proven = sorted({self.known[n] for n in node_ids if n in self.known})
        statuses = registry.statuses_of(self.client, proven) if proven else {}
        pending = []
        for node_id in node_ids:
            address = self.known.get(node_id)
            if address is not None and statuses[address] != "Active":
                self.round_refused[address] = self.refused.get(node_id, "not active in the NodeRegistry")
            elif self.book.may_ask(node_id):
                pending.append(node_id)
        if not pending:
            return set()
        message_ids = list(grid.push_messages([self._challenge(node_id) for node_id in pending]))
        asked = set()
        for node_id, message_id in zip(pending, message_ids, strict=False):
            if message_id:  # Flower returns no id for a message it could not take
                self.book.opened(message_id, node_id)
                asked.add(node_id)
        return asked

    def _await(self, grid: Grid, asked: set[int], enough: Callable[[], bool]) -> None:
        """Take in answers until every node in `asked` answered or the round's patience is over."""
        patience = Patience(self.policy)
        waiting = asked & self.book.open_nodes()
        while waiting and not patience.over(enough):
            patience.pause()
            self._collect(grid)
            if (still := asked & self.book.open_nodes()) != waiting:
                patience.answered()
                waiting = still

    def _collect(self, grid: Grid) -> None:
        """Check the answers that arrived for open challenges and close the expired ones; one registry
        read for every valid answer of the batch, not one per node."""
        message_ids = self.book.message_ids()
        if not message_ids:
            return
        proofs: dict[int, str] = {}
        for reply in grid.pull_messages(message_ids):
            node_id = self.book.answered(reply.metadata.reply_to_message_id)
            if node_id is None:
                continue  # not (or no longer) an open challenge
            address = self._check_answer(node_id, reply)
            if address is None:
                self.book.failed(node_id)
            else:
                proofs[node_id] = address
        for node_id in self.book.expired():
            self._challenges.issue(node_id)  # invalidate the unanswered nonce
            self.book.failed(node_id)
            timeout = self.policy.answer_timeout
            self._refuse(node_id, f"no answer to the identity challenge within {timeout:g} s")
        statuses = registry.statuses_of(self.client, sorted(set(proofs.values()))) if proofs else {}
        for node_id, address in sorted(proofs.items()):
            self._accept(node_id, address, statuses[address])

    def _challenge(self, node_id: int) -> Message:
        # The statement names this gate's chain, ledger and task (protocol/join.py): an answer signed
        # for another ledger never verifies here. They travel too, so a node of another deployment
        # can refuse in one line instead of signing for the wrong ledger.
        self._challenges.task = self.join_task
        statement = self._challenges.issue(node_id)
        challenge = {"nonce": statement.nonce, "chain": statement.chain_id, "ledger": statement.ledger}
        content = RecordDict({AUTH_RECORD: ConfigRecord({**challenge, "task": statement.task})})
        # The SuperLink drops the message when the challenge expires: a node that comes back later
        # does not answer a stale nonce.
        return Message(
            content=content,
            message_type=AUTH_MESSAGE_TYPE,
            dst_node_id=node_id,
            ttl=self.policy.answer_timeout,
        )

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
        """Admit a node that proved `address`, if that address is Active. An admitted node holding the
        same address is replaced: only the key's holder can prove it, and a restarted SuperNode comes
        back under a new Flower node id while its old id may still look connected for a while."""
        if status != "Active":
            self._refuse(
                node_id, f"address {address} is not active in the NodeRegistry (status {status})", address
            )
            return
        self.book.succeeded(node_id)
        for old in [n for n, a in self.admitted.items() if a == address and n != node_id]:
            del self.admitted[old]
            self.book.retire(old)
            self.refused[old] = f"replaced by node {node_id}, which proved the same address"
            self.run_events.emit(NodeNotice(old, "refused", address, self.refused[old]))
        self.admitted[node_id] = address
        self.refused.pop(node_id, None)
        self.run_events.emit(NodeNotice(node_id, "verified", address))

    def _refuse(self, node_id: int, reason: str, address: str | None = None) -> None:
        """Refuse a node (announced once per reason; the round report lists it)."""
        if self.refused.get(node_id) != reason:  # each verdict is announced once, not every round
            self.run_events.emit(NodeNotice(node_id, "refused", address or "", reason))
        self.refused[node_id] = reason
        self.round_refused[address or f"node {node_id}"] = reason
