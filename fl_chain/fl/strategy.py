"""ChainStrategy: any Flower strategy, plus on-chain identity checks, reply filtering, contribution
scoring and a per-round commit to the ModelLedger. Composition, not a fork: the wrapped strategy
samples and aggregates; this class decides who may be sampled and what reaches aggregation."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log
from web3 import Web3

from fl_chain.chain.client import ChainClient
from fl_chain.chain.ledger import commit_round
from fl_chain.fl.auth import AUTH_RECORD, Challenges
from fl_chain.fl.scoring import SCORERS, RoundInput, find_outliers, normalise
from fl_chain.fl.selection import Selector, local_steps
from fl_chain.fl.validation import check_metrics, check_update
from fl_chain.store import ModelStore, canonical_bytes

AUTH_MESSAGE_TYPE = "query.flchain_auth"  # handled by the ClientApp's @app.query("flchain_auth")
CONFIG_TASK = "flchain-task"
CONFIG_PARENT_ROUND = "flchain-parent-round"


def wait_for_finalization(client: ChainClient, task: int, round_number: int, timeout: float) -> None:
    """Block until the validator quorum finalized the round (no-op if timeout <= 0)."""
    if timeout <= 0:
        return
    if client.validation is None:
        raise RuntimeError("federation.wait_finalized needs a deployment with the ValidationQuorum contract")
    deadline = time.monotonic() + timeout
    while not client.validation.functions.isFinalized(task, round_number).call():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"flchain: round {round_number} of task {task} was not finalized by the validators within "
                f"{timeout:.0f} s"
            )
        time.sleep(0.2)


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


def record_to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Named numpy arrays of an ArrayRecord (insertion order kept)."""
    return {name: array.numpy() for name, array in record.items()}


def arrays_to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """An ArrayRecord holding exactly these arrays."""
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in arrays.items()})


class VerifiedGrid(Grid):
    """A view of the Grid that only shows nodes allowed to take part; everything else delegates."""

    def __init__(self, grid: Grid, allowed: set[int]) -> None:
        self._grid = grid
        self._allowed = allowed

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
        """Only the allowed nodes that are connected."""
        return [n for n in self._grid.get_node_ids() if n in self._allowed]

    def get_nodes(self):
        """Only the allowed nodes."""
        return [n for n in self._grid.get_nodes() if n.node_id in self._allowed]

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


@dataclass
class RoundReport:
    """What happened in one round, as printed and written to the report file."""

    round: int
    participants: list[str] = field(default_factory=list)
    scores: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    accuracy: float = 0.0
    loss: float = 0.0
    model_hash: str = ""
    uri: str = ""
    tx: str = ""
    gas: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)
    penalized: list[str] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)
    reputations: dict[str, int] = field(default_factory=dict)
    raw_scores: dict[str, float] = field(default_factory=dict)


@dataclass
class ScoringPolicy:
    """How replies are scored and which are rejected as outliers."""

    method: str = "cosine"
    shapley_budget: int = 64
    reject_outliers: bool = False
    outlier_norm_ratio: float = 3.0
    seed: int = 0


@dataclass
class ChainContext:
    """What ChainStrategy needs from the chain side."""

    client: ChainClient
    coordinator: LocalAccount
    task: int
    store: ModelStore
    parent_hash: bytes


class ChainStrategy(Strategy):
    """Wraps a Flower strategy: authenticate nodes against the NodeRegistry, sample only verified
    active nodes, drop unusable replies, score contributions, store the aggregate and commit the round.
    """

    def __init__(
        self,
        inner: Strategy,
        chain: ChainContext,
        validation_loss: Callable[[Mapping[str, np.ndarray]], float],
        test_metrics: Callable[[Mapping[str, np.ndarray]], tuple[float, float]],
        max_update_norm: float = 1e3,
        weighted_by_key: str = "num-examples",
        auth_timeout: float = 120.0,
        min_nodes: int = 1,
        report_path: Path | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
        scoring: ScoringPolicy | None = None,
        selector: Selector | None = None,
        round_seconds: float = 0.0,
        batch_size: int = 32,
        wait_finalized: float = 0.0,
        round_offset: int = 0,
    ) -> None:
        self.inner = inner
        self.scoring = scoring or ScoringPolicy()
        self.selector = selector
        self.round_seconds = round_seconds
        self.wait_finalized = wait_finalized
        # On-chain round = round_offset + Flower's round (a resumed run continues the numbering).
        self.round_offset = round_offset
        self._samples_per_sec: dict[str, int] = {}  # declared capacity, read once per node per run
        self.batch_size = batch_size
        self._selected: dict[int, str] = {}
        self.chain = chain
        self.validation_loss = validation_loss
        self.test_metrics = test_metrics
        self.max_update_norm = max_update_norm
        self.weighted_by_key = weighted_by_key
        self.auth_timeout = auth_timeout
        self.min_nodes = max(min_nodes, int(getattr(inner, "min_available_nodes", 1)))
        self.report_path = report_path
        self.on_round = on_round
        self.verified: dict[int, str] = {}  # node id -> Ethereum address
        self.known: dict[int, str] = {}  # every node id -> address it ever proved, verified or not
        self.refused: dict[int, str] = {}  # node id -> reason
        self.reports: list[RoundReport] = []
        self._challenges: Challenges | None = None
        self._previous: dict[str, np.ndarray] = {}
        self._train_started = 0.0
        self._round_refused: dict[str, str] = {}

    # ---------------------------------------------------------------- identity
    def _refuse(self, node_id: int, reason: str, address: str | None = None) -> None:
        who = f"node {node_id}" + (f" ({address})" if address else "")
        if self.refused.get(node_id) != reason:
            log(WARNING, "flchain: refused %s: %s", who, reason)
        self.refused[node_id] = reason
        self._round_refused[address or f"node {node_id}"] = reason

    def authenticate(self, grid: Grid, timeout: float = 60.0) -> None:
        """Challenge every connected node not yet verified; verified nodes are re-checked on-chain."""
        client = self.chain.client
        if self._challenges is None:
            self._challenges = Challenges(client.deployment.chain_id, int(grid.run.run_id))
        for node_id, address in list(self.verified.items()):
            if not client.registry.functions.isActive(address).call():
                del self.verified[node_id]
                self._refuse(node_id, f"address {address} is no longer active in the NodeRegistry", address)
        pending = []
        for node_id in grid.get_node_ids():
            if node_id in self.verified:
                continue
            proven = self.known.get(node_id)
            # A node that proved an address which is still inactive is not asked again (no message).
            if proven and not client.registry.functions.isActive(proven).call():
                self._round_refused[proven] = self.refused.get(node_id, "not active in the NodeRegistry")
                continue
            pending.append(node_id)
        if not pending:
            return
        messages = []
        for node_id in pending:
            nonce = self._challenges.issue(node_id)
            content = RecordDict({AUTH_RECORD: ConfigRecord({"nonce": nonce})})
            messages.append(Message(content=content, message_type=AUTH_MESSAGE_TYPE, dst_node_id=node_id))
        answered: set[int] = set()
        for reply in grid.send_and_receive(messages, timeout=timeout):
            node_id = reply.metadata.src_node_id
            answered.add(node_id)
            self._check_answer(node_id, reply)
        for node_id in set(pending) - answered:
            self._challenges.issue(node_id)  # invalidate the unanswered nonce
            self._refuse(node_id, "no answer to the identity challenge")

    def _check_answer(self, node_id: int, reply: Message) -> None:
        if reply.has_error():
            self._refuse(node_id, f"client error: {short_reason(reply.error.reason)}")
            return
        answer = reply.content.config_records.get(AUTH_RECORD)
        if answer is None or "address" not in answer or "signature" not in answer:
            self._refuse(node_id, "malformed identity answer")
            return
        claimed, signature = str(answer["address"]), str(answer["signature"])
        address, reason = self._challenges.verify(node_id, claimed, signature)
        if address is None:
            self._refuse(node_id, reason, claimed)
            return
        self.known[node_id] = Web3.to_checksum_address(address)
        if not self.chain.client.registry.functions.isActive(Web3.to_checksum_address(address)).call():
            status = self.chain.client.node_status(address)
            self._refuse(
                node_id, f"address {address} is not active in the NodeRegistry (status {status})", address
            )
            return
        bound = [n for n, a in self.verified.items() if a.lower() == address.lower() and n != node_id]
        if bound:
            self._refuse(node_id, f"address {address} is already in use by node {bound[0]}", address)
            return
        self.verified[node_id] = Web3.to_checksum_address(address)
        self.refused.pop(node_id, None)
        log(INFO, "flchain: node %s verified as %s", node_id, address)

    def _wait_for_nodes(self, grid: Grid) -> None:
        deadline = time.monotonic() + self.auth_timeout
        self.authenticate(grid)
        while len(self._allowed(grid)) < self.min_nodes:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"flchain: only {len(self._allowed(grid))} verified active nodes after "
                    f"{self.auth_timeout:.0f} s, {self.min_nodes} needed; refused: {self.refused}"
                )
            time.sleep(1.0)
            self.authenticate(grid)

    def _allowed(self, grid: Grid) -> set[int]:
        connected = set(grid.get_node_ids())
        return {n for n in self.verified if n in connected}

    # ---------------------------------------------------------------- training
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Authenticate newcomers, then let the wrapped strategy sample among verified nodes."""
        self._round_refused = {}
        self._wait_for_nodes(grid)
        self._previous = record_to_arrays(arrays)
        config = ConfigRecord(dict(config))
        config[CONFIG_TASK] = self.chain.task
        config[CONFIG_PARENT_ROUND] = self.round_offset + server_round - 1
        allowed = self._allowed(grid)
        if self.selector is not None:
            by_address = {self.verified[n]: n for n in allowed}
            reputation = {
                a: self.chain.client.reputation.functions.reputationOf(a).call() / 1e6 for a in by_address
            }
            allowed = {by_address[a] for a in self.selector.select(list(by_address), reputation)}
        messages = list(self.inner.configure_train(server_round, arrays, config, VerifiedGrid(grid, allowed)))
        if self.round_seconds > 0:
            messages = [self._sized(m) for m in messages]
        self._selected = {m.metadata.dst_node_id: self.verified[m.metadata.dst_node_id] for m in messages}
        self._train_started = time.monotonic()
        return messages

    def _sized(self, message: Message) -> Message:
        """A copy of the message whose config tells the node how many mini-batches fit its capacity."""
        address = self.verified[message.metadata.dst_node_id]
        if address not in self._samples_per_sec:
            _, capacity, _, _ = self.chain.client.registry.functions.getNode(address).call()
            self._samples_per_sec[address] = int(capacity[2])
        steps = local_steps(self._samples_per_sec[address], self.round_seconds, self.batch_size)
        if steps is None:
            return message
        content = RecordDict(dict(message.content.items()))
        for key, record in message.content.config_records.items():
            sized = ConfigRecord(dict(record))
            sized["local-steps"] = steps
            content[key] = sized
        return Message(
            content=content,
            message_type=message.metadata.message_type,
            dst_node_id=message.metadata.dst_node_id,
        )

    def _filter(self, replies: Iterable[Message]) -> tuple[list[Message], dict[str, str]]:
        accepted: list[Message] = []
        dropped: dict[str, str] = {}
        for reply in replies:
            node_id = reply.metadata.src_node_id
            who = self.verified.get(node_id, f"node {node_id}")
            if reply.has_error():
                dropped[who] = f"error reply: {short_reason(reply.error.reason)}"
                continue
            if node_id not in self.verified:
                dropped[who] = "reply from an unverified node"
                continue
            records = list(reply.content.array_records.values())
            metrics = list(reply.content.metric_records.values())
            if len(records) != 1 or len(metrics) != 1:
                dropped[who] = "reply must hold exactly one ArrayRecord and one MetricRecord"
                continue
            try:
                update = record_to_arrays(records[0])
            except Exception as exc:  # undecodable arrays
                dropped[who] = f"undecodable arrays ({exc})"
                continue
            reason = check_update(update, self._previous, self.max_update_norm) or check_metrics(
                metrics[0], self.weighted_by_key
            )
            if reason:
                dropped[who] = reason
                continue
            accepted.append(reply)
        for who, reason in dropped.items():
            log(WARNING, "flchain: dropped reply from %s: %s", who, reason)
        return accepted, dropped

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Filter, score, aggregate with the wrapped strategy, store, evaluate and commit the round."""
        seconds = {"train": time.monotonic() - self._train_started}
        server_round = self.round_offset + server_round  # the on-chain round from here on
        replies = list(replies)
        answered_ids = {r.metadata.src_node_id for r in replies if not r.has_error()}
        missed = sorted({a for n, a in self._selected.items() if n not in answered_ids})
        accepted, dropped = self._filter(replies)
        malformed = {
            self.verified[r.metadata.src_node_id]
            for r in replies
            if not r.has_error() and r.metadata.src_node_id in self.verified
        } - {self.verified[r.metadata.src_node_id] for r in accepted}
        if self.selector is not None:
            self.selector.record(
                list(self._selected.values()),
                [self._selected[n] for n in answered_ids if n in self._selected],
            )

        started = time.monotonic()
        updates = {
            self.verified[r.metadata.src_node_id]: record_to_arrays(
                next(iter(r.content.array_records.values()))
            )
            for r in accepted
        }
        outliers = (
            find_outliers(self._previous, updates, self.scoring.outlier_norm_ratio)
            if self.scoring.reject_outliers
            else {}
        )
        for who, reason in outliers.items():
            log(WARNING, "flchain: dropped reply from %s: %s", who, reason)
            dropped[who] = reason
        accepted = [r for r in accepted if self.verified[r.metadata.src_node_id] not in outliers]
        updates = {who: arrays for who, arrays in updates.items() if who not in outliers}
        weights = {
            self.verified[r.metadata.src_node_id]: float(
                next(iter(r.content.metric_records.values()))[self.weighted_by_key]
            )
            for r in accepted
        }
        raw: dict[str, float] = {}
        if updates:
            raw = SCORERS[self.scoring.method](
                RoundInput(
                    self._previous,
                    updates,
                    weights,
                    self.validation_loss,
                    budget=self.scoring.shapley_budget,
                    seed=self.scoring.seed + server_round,
                )
            )
        scores = normalise(raw)
        seconds["score"] = time.monotonic() - started

        agg_arrays, agg_metrics = (
            self.inner.aggregate_train(server_round, accepted) if accepted else (None, None)
        )
        if agg_arrays is None:
            log(WARNING, "flchain: round %s has no usable update; the model is unchanged", server_round)
            new = dict(self._previous)
        else:
            # Keep the model's dtypes, so the committed hash is over exactly what clients receive next.
            aggregated = record_to_arrays(agg_arrays)
            new = {k: aggregated[k].astype(self._previous[k].dtype, copy=False) for k in self._previous}

        started = time.monotonic()
        blob = canonical_bytes(new)
        digest, uri = self.chain.store.put(blob)
        seconds["store"] = time.monotonic() - started

        started = time.monotonic()
        penalized = sorted(malformed | set(outliers))
        receipt = commit_round(
            self.chain.client,
            self.chain.coordinator,
            self.chain.task,
            server_round,
            digest,
            "",
            self.chain.parent_hash,
            scores,
            missed,
            penalized,
        )
        self.chain.parent_hash = digest
        seconds["commit"] = time.monotonic() - started
        if self.wait_finalized > 0:
            started = time.monotonic()
            wait_for_finalization(self.chain.client, self.chain.task, server_round, self.wait_finalized)
            seconds["finalize"] = time.monotonic() - started
        client = self.chain.client
        suspended = [e["node"] for e in client.events(client.reputation, "AutoSuspended", receipt)]
        for who in suspended:
            log(WARNING, "flchain: %s suspended automatically (reputation below the threshold)", who)

        loss, accuracy = self.test_metrics(new)
        report = RoundReport(
            round=server_round,
            participants=sorted(scores),
            scores=scores,
            refused=dict(self._round_refused),
            dropped=dropped,
            accuracy=accuracy,
            loss=loss,
            model_hash="0x" + digest.hex(),
            uri=uri,
            tx="0x" + bytes(receipt["transactionHash"]).hex(),
            gas=int(receipt["gasUsed"]),
            seconds={k: round(v, 3) for k, v in seconds.items()},
            missed=missed,
            penalized=penalized,
            suspended=suspended,
            reputations={
                a: int(client.reputation.functions.reputationOf(a).call())
                for a in sorted(set(self.known.values()))
            },
            raw_scores={k: float(v) for k, v in raw.items()},
        )
        self.record(report)
        return arrays_to_record(new), agg_metrics

    def record(self, report: RoundReport) -> None:
        """Log a round, append it to the report file and hand it to the callback."""
        self.reports.append(report)
        log(
            INFO,
            "flchain: round %s committed: %d participants, %d refused, %d dropped, accuracy %.4f, "
            "loss %.4f, hash %s, gas %s, tx %s, seconds %s",
            report.round,
            len(report.participants),
            len(report.refused),
            len(report.dropped),
            report.accuracy,
            report.loss,
            report.model_hash,
            report.gas,
            report.tx,
            report.seconds,
        )
        if self.report_path is not None:
            with open(self.report_path, "a") as fh:
                fh.write(json.dumps(asdict(report)) + "\n")
        if self.on_round is not None:
            self.on_round(report)

    # ---------------------------------------------------------------- evaluation
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Federated evaluation (if the wrapped strategy does any) only on verified nodes."""
        config = ConfigRecord(dict(config))
        config[CONFIG_TASK] = self.chain.task
        config[CONFIG_PARENT_ROUND] = self.round_offset + server_round
        return self.inner.configure_evaluate(
            server_round, arrays, config, VerifiedGrid(grid, self._allowed(grid))
        )

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Aggregate evaluation replies from verified nodes only."""
        good = [r for r in replies if not r.has_error() and r.metadata.src_node_id in self.verified]
        return self.inner.aggregate_evaluate(server_round, good) if good else None

    def summary(self) -> None:
        """Log the wrapped strategy's summary and the chain settings."""
        log(INFO, "\tChainStrategy around %s, task %s", type(self.inner).__name__, self.chain.task)
        self.inner.summary()
