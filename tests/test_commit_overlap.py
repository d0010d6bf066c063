"""The ledger overlaps training (coordinator/commit_pipeline.py), run by Flower's own `Strategy.start`
with fake nodes over a real anvil chain (tests/test_strategy.py's harness): round r's commit runs while
round r+1 trains, a failed commit of round r stops the run before round r+1's replies are used or
committed, and what the ledger and the run events record is the same as with the commit on the
critical path. (Nodes refusing a parent that never lands: tests/test_chain_mod.py.)"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg

from fl_chain.chain import ledger
from fl_chain.config import RunConfig
from fl_chain.coordinator import round_scoring
from fl_chain.coordinator.ledger_session import LedgerSession
from fl_chain.coordinator.strategy import ChainStrategy
from fl_chain.errors import FlchainError
from fl_chain.store import ModelStore
from fl_chain.wire.records import CONFIG_ROUND, arrays_to_record
from fl_chain.wire.report import RoundReport, RunEvents
from tests.chainutil import LocalChain, new_nodes
from tests.conftest import flower_server_identity
from tests.test_strategy import INITIAL, RUN_ID, FakeGrid, node

ROUNDS = 3


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """Messages built in this test carry a ServerApp identity, as Flower's runtime would give them."""
    with flower_server_identity(RUN_ID):
        yield


class CountingFedAvg(FedAvg):
    """FedAvg that notes which rounds' replies it aggregated."""

    def __init__(self) -> None:
        super().__init__(fraction_evaluate=0.0, min_available_nodes=2)
        self.aggregated: list[int] = []

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Note the round, then aggregate as FedAvg does."""
        self.aggregated.append(server_round)
        return super().aggregate_train(server_round, replies)


def _federation(
    chain: LocalChain, store: Path, overlap: bool
) -> tuple[ChainStrategy, CountingFedAvg, FakeGrid, list, list[str]]:
    """Fresh nodes and a strategy for a fresh task, its run events kept in a list."""
    a, b = new_nodes(chain, 2)
    chain_id = chain.client.deployment.chain_id
    grid = FakeGrid({1: node(a, chain_id, 1, 0.1), 2: node(b, chain_id, 2, 0.3)})
    entries: list = []
    config = RunConfig()
    config.federation.overlap_commit = overlap
    session = LedgerSession(
        chain.client, chain.coordinator, ModelStore(store), RunEvents(callback=entries.append), config
    )
    inner = CountingFedAvg()
    strategy = ChainStrategy.with_ledger(inner, session, app="overlap/1")
    return strategy, inner, grid, entries, [a.address, b.address]


def _run(chain: LocalChain, store: Path, overlap: bool) -> tuple[ChainStrategy, list, list[str]]:
    """ROUNDS rounds through Flower's loop."""
    strategy, _, grid, entries, addresses = _federation(chain, store, overlap)
    strategy.start(grid, arrays_to_record(INITIAL), num_rounds=ROUNDS)
    return strategy, entries, addresses


@pytest.fixture()
def commit_threads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """(round, thread name) of every commit transaction sent."""
    seen: list[tuple[int, str]] = []
    real = ledger.commit_round

    def noting(client, coordinator, task, round_number, *args, **kwargs):
        seen.append((round_number, threading.current_thread().name))
        return real(client, coordinator, task, round_number, *args, **kwargs)

    monkeypatch.setattr(ledger, "commit_round", noting)
    return seen


@pytest.fixture()
def score_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread that computed each round's scores."""
    seen: list[str] = []
    real = round_scoring.score_round

    def noting(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(round_scoring, "score_round", noting)
    return seen


def _recorded(entries: list, addresses: list[str]) -> list[str]:
    """The round reports as text, without what differs between any two runs (transaction, gas, timings)
    and with the nodes' addresses replaced by their order."""
    texts = []
    for report in (e for e in entries if isinstance(e, RoundReport)):
        fields = dataclasses.asdict(report)
        text = json.dumps({k: v for k, v in fields.items() if k not in ("tx", "gas", "seconds")})
        for i, address in enumerate(addresses):
            text = text.replace(address, f"node{i}").replace(address.lower(), f"node{i}")
        # Reports list nodes in address order, and fresh nodes' addresses sort differently in each run:
        # lists are compared in node order.
        named = {k: sorted(v) if isinstance(v, list) else v for k, v in json.loads(text).items()}
        texts.append(json.dumps(named, sort_keys=True))
    return texts


def test_overlapped_commits_record_exactly_what_synchronous_ones_do(
    chain: LocalChain, tmp_path: Path, commit_threads: list[tuple[int, str]], score_threads: list[str]
) -> None:
    """Round r's commit, and its scores (they change neither the model nor round r+1's start), are made
    while round r+1 trains; the ledger and the reports hold exactly what a synchronous run's do."""
    overlapped, entries, nodes = _run(chain, tmp_path / "store", overlap=True)
    in_background = [r for r, thread in commit_threads if thread.startswith("flchain-commit")]
    assert in_background == list(range(1, ROUNDS + 1))  # every training round's commit overlapped
    assert len(score_threads) == ROUNDS and all(t.startswith("flchain-commit") for t in score_threads)
    commit_threads.clear()
    score_threads.clear()
    synchronous, plain_entries, plain_nodes = _run(chain, tmp_path / "store", overlap=False)
    assert all(thread == "MainThread" for _, thread in commit_threads)
    assert len(score_threads) == ROUNDS and not any(t.startswith("flchain-commit") for t in score_threads)
    client = chain.client
    hashes = [ledger.get_round(client, overlapped.committer.task, r).model_hash for r in range(ROUNDS + 1)]
    assert hashes == [
        ledger.get_round(client, synchronous.committer.task, r).model_hash for r in range(ROUNDS + 1)
    ]
    assert _recorded(entries, nodes) == _recorded(plain_entries, plain_nodes)
    assert len(_recorded(entries, nodes)) == ROUNDS + 1
    scored = [e.scores for e in entries if isinstance(e, RoundReport) and e.scores]
    assert len(scored) == ROUNDS and all(len(s) == 2 for s in scored)  # both nodes scored every round


def test_a_failed_commit_stops_the_run_before_the_next_round_is_used_or_committed(
    chain: LocalChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy, inner, grid, entries, _ = _federation(chain, tmp_path / "store", overlap=True)
    real = ledger.commit_round

    def failing_round_2(client, coordinator, task, round_number, *args, **kwargs):
        if round_number == 2:
            raise FlchainError("commitRound of round 2 reverted (injected)")
        return real(client, coordinator, task, round_number, *args, **kwargs)

    monkeypatch.setattr(ledger, "commit_round", failing_round_2)
    with pytest.raises(FlchainError, match="round 2 reverted"):
        strategy.start(grid, arrays_to_record(INITIAL), num_rounds=4)
    assert ledger.round_count(chain.client, strategy.committer.task) == 2  # rounds 0 and 1 only
    # Round 3 was sampled and sent while round 2's commit was in flight, but its replies never reached
    # the wrapped strategy: the failure stopped the run first. Round 4 never started.
    sent_rounds = {int(m.content["config"][CONFIG_ROUND]) for m in grid.sent if "config" in m.content}
    assert 3 in sent_rounds and 4 not in sent_rounds
    assert inner.aggregated == [1, 2]
    assert [e.round for e in entries if isinstance(e, RoundReport)] == [0, 1]


def _suspending_run(
    chain: LocalChain, store: Path, overlap: bool, honest_after: int | None
) -> tuple[ChainStrategy, list[RoundReport], str]:
    """8 rounds of two honest nodes and a third that sends NaN (penalized every round) until round
    `honest_after`, then honest updates."""
    a, b, c = new_nodes(chain, 3)
    chain_id = chain.client.deployment.chain_id
    poisoned, honest = node(c, chain_id, 3, 0.2, nan=True), node(c, chain_id, 3, 0.2)

    def turning(message: Message) -> Message | None:
        config = message.content.config_records.get("config")
        late = honest_after is not None and config is not None and int(config[CONFIG_ROUND]) > honest_after
        return (honest if late else poisoned)(message)

    grid = FakeGrid({1: node(a, chain_id, 1, 0.1), 2: node(b, chain_id, 2, 0.3), 3: turning})
    entries: list = []
    config = RunConfig()
    config.federation.overlap_commit = overlap
    session = LedgerSession(
        chain.client, chain.coordinator, ModelStore(store), RunEvents(callback=entries.append), config
    )
    strategy = ChainStrategy.with_ledger(CountingFedAvg(), session, app="overlap/1")
    strategy.start(grid, arrays_to_record(INITIAL), num_rounds=8)
    return strategy, [e for e in entries if isinstance(e, RoundReport)], c.address


def test_a_node_suspended_by_the_commit_in_flight_is_dropped_not_scored(
    chain: LocalChain, tmp_path: Path, commit_threads: list[tuple[int, str]]
) -> None:
    """Round r's commit suspends a node while round r+1, which sampled it before that commit landed,
    trains; the node's round r+1 update is usable. The ledger refuses scores and charges for an inactive
    node, so round r+1 drops that reply with the reason instead of scoring it, and the run goes on."""
    _, synchronous, address = _suspending_run(chain, tmp_path / "sync", overlap=False, honest_after=None)
    suspending = next(r.round for r in synchronous if address.lower() in map(str.lower, r.suspended))
    commit_threads.clear()
    strategy, reports, address = _suspending_run(chain, tmp_path / "o", overlap=True, honest_after=suspending)
    assert [r.round for r in reports] == list(range(9))  # every round committed
    in_background = [r for r, thread in commit_threads if thread.startswith("flchain-commit")]
    assert in_background == list(range(1, 9))  # the overlap stayed on throughout
    assert address.lower() in map(str.lower, reports[suspending].suspended)
    after = reports[suspending + 1]
    assert after.dropped[address] == f"suspended by round {suspending}'s commit while this round trained"
    assert address not in after.penalized and address not in after.missed and address not in after.scores
    assert ledger.round_count(chain.client, strategy.committer.task) == 9
