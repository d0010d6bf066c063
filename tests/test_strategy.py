"""ChainStrategy and its parts driven directly, as Flower tests its strategies: mock replies built in
the test, a real anvil chain underneath, no Flower process. The wrapped strategy is Flower's FedAvg."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from flwr.app import ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fl_chain.chain import ledger
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.evaluation import Evaluation
from fl_chain.coordinator.policies import ChainOptions, RoundPolicy
from fl_chain.coordinator.reporting import run_end_reported
from fl_chain.coordinator.screening import ScreeningPolicy, screen_replies
from fl_chain.coordinator.strategy import ChainStrategy
from fl_chain.errors import FlchainError
from fl_chain.protocol.join import JoinStatement, sign_statement
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.store import ModelStore
from fl_chain.wire.records import (
    AUTH_RECORD,
    CONFIG_PARENT_ROUND,
    CONFIG_TASK_ID,
    arrays_to_record,
    record_to_arrays,
)
from fl_chain.wire.report import NodeNotice, RoundReport, RunEnd, RunEvents
from tests.chainutil import LocalChain, new_nodes
from tests.conftest import flower_server_identity

RUN_ID = 77
INITIAL = {"w": np.zeros((3, 2), dtype=np.float32), "b": np.zeros(2, dtype=np.float32)}
Reply = Callable[[Message], Message | None]


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """Messages built in this test carry a ServerApp identity, as Flower's runtime would give them."""
    with flower_server_identity(RUN_ID):
        yield


class FakeGrid(Grid):
    """A Grid whose nodes are functions from a message to their reply (None: no answer in time)."""

    def __init__(self, nodes: dict[int, Reply]) -> None:
        self.nodes = nodes
        self.sent: list[Message] = []
        self._replies: dict[str, Message] = {}  # pushed message id -> its reply, until pulled

    def set_run(self, run) -> None:
        """Unused."""

    @property
    def run(self):
        """A run with a fixed id."""
        return SimpleNamespace(run_id=RUN_ID)

    def create_message(self, *args, **kwargs) -> Message:
        """Unused by the strategies."""
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        """Every fake node is connected."""
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Each message gets an id (as Flower's grids give one) and its node's reply, if any, is kept."""
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = f"m{len(self.sent)}"
            self.sent.append(message)
            reply = self.nodes[message.metadata.dst_node_id](message)
            if reply is not None:
                self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies that arrived for these ids."""
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Each addressed node's reply, if it gives one."""
        replies = []
        for message in messages:
            self.sent.append(message)
            reply = self.nodes[message.metadata.dst_node_id](message)
            if reply is not None:
                replies.append(reply)
        return replies


def node(
    account: LocalAccount, chain_id: int, node_id: int, delta: float, examples: int = 10, **bad
) -> Reply:
    """An honest node that answers the join challenge and adds `delta` to every weight when training;
    `bad` makes it misbehave: nan=True poisons its update, silent=True never answers training."""

    def reply(message: Message) -> Message | None:
        if AUTH_RECORD in message.content.config_records:
            asked = message.content.config_records[AUTH_RECORD]  # the gate's ledger and task, a nonce
            statement = JoinStatement(
                chain_id, str(asked["ledger"]), int(asked["task"]), RUN_ID, node_id, str(asked["nonce"])
            )
            signature = sign_statement(account, statement)
            answer = ConfigRecord({"address": account.address, "signature": signature})
            return Message(RecordDict({AUTH_RECORD: answer}), reply_to=message)
        if bad.get("silent"):
            return None
        arrays = {k: v + np.float32(delta) for k, v in record_to_arrays(message.content["arrays"]).items()}
        if bad.get("nan"):
            arrays["w"][0, 0] = np.nan
        metrics = MetricRecord({"num-examples": examples})
        return Message(RecordDict({"arrays": arrays_to_record(arrays), "metrics": metrics}), reply_to=message)

    return reply


def fedavg_on_new_task(
    chain: LocalChain, tmp_path: Path, tag: bytes, min_nodes: int, policy: RoundPolicy
) -> ChainStrategy:
    """A ChainStrategy around FedAvg (every node, at least `min_nodes`) on a new task (identity `tag`
    repeated) whose round 0 is INITIAL, evaluating nothing."""
    committer = RoundCommitter.new_task(chain.client, chain.coordinator, ModelStore(tmp_path / "s"), tag * 32)
    committer.commit(0, INITIAL)
    return ChainStrategy.for_task(
        FedAvg(fraction_evaluate=0.0, min_train_nodes=min_nodes, min_available_nodes=min_nodes),
        committer,
        ChainOptions(Evaluation(test_metrics=lambda arrays: (0.0, 0.0)), policy),
    )


def train_round(
    strategy: ChainStrategy, grid: FakeGrid, rnd: int, arrays: dict
) -> tuple[dict, list[Message]]:
    """What Flower's Strategy.start does for one training round."""
    messages = list(strategy.configure_train(rnd, arrays_to_record(arrays), ConfigRecord({"lr": 0.1}), grid))
    replies = grid.send_and_receive(messages)
    record, _ = strategy.aggregate_train(rnd, replies)
    return record_to_arrays(record), messages


def test_rounds_commit_screen_and_score_without_flower_processes(chain: LocalChain, tmp_path: Path) -> None:
    client, chain_id = chain.client, chain.client.deployment.chain_id
    honest_a, honest_b, poisoner, stranger = new_nodes(chain, 3) + new_nodes(chain, 1, approve=False)
    grid = FakeGrid(
        {
            1: node(honest_a, chain_id, 1, 0.1, examples=10),
            2: node(honest_b, chain_id, 2, 0.4, examples=30),
            3: node(poisoner, chain_id, 3, 0.2, nan=True),
            4: node(stranger, chain_id, 4, 0.3),
        }
    )
    entries: list = []
    committer = RoundCommitter.new_task(
        client, chain.coordinator, ModelStore(tmp_path / "store"), b"\x01" * 32
    )
    # The three nodes took part in the task before (scored at their current value, a no-op on their
    # reputation): members of the task, so the ledger accepts charging them (a first round is free).
    round0 = committer.commit(0, INITIAL, {a.address: 500_000 for a in (honest_a, honest_b, poisoner)})
    strategy = ChainStrategy.for_task(
        FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2),
        committer,
        ChainOptions(
            Evaluation(test_metrics=lambda arrays: (float(np.abs(arrays["w"]).sum()), 0.5)),
            RoundPolicy(min_nodes=2, auth_timeout=5, screening=ScreeningPolicy(max_update_norm=10.0)),
            RunEvents(callback=entries.append),
        ),
    )

    model, messages = train_round(strategy, grid, 1, INITIAL)

    # The unregistered node was refused at the gate and never asked to train.
    assert {m.metadata.dst_node_id for m in messages} == {1, 2, 3}
    refused = [e for e in entries if isinstance(e, NodeNotice) and e.verdict == "refused"]
    assert [(e.address, "not active" in e.reason) for e in refused] == [(stranger.address, True)]
    config = messages[0].content.config_records["config"]
    assert (config[CONFIG_TASK_ID], config[CONFIG_PARENT_ROUND], config["lr"]) == (committer.task, 0, 0.1)
    # FedAvg of the two usable updates, weighted 10:30; the NaN update never reached aggregation.
    np.testing.assert_allclose(model["w"], np.full((3, 2), 0.25 * 0.1 + 0.75 * 0.4), rtol=1e-6)
    assert model["w"].dtype == np.float32
    on_chain = ledger.get_round(client, committer.task, 1)
    assert on_chain.model_hash == hash_arrays(model)
    report = [e for e in entries if isinstance(e, RoundReport)][-1]
    assert report.participants == sorted([honest_a.address, honest_b.address])
    assert report.penalized == [poisoner.address] and "NaN" in report.dropped[poisoner.address]
    assert ledger.contributions(client, committer.task, 1) == report.scores
    assert report.tx and report.gas > 0 and report.model_hash == "0x" + on_chain.model_hash.hex()
    logs = client.ledger.events.RoundCommitted().get_logs(
        from_block=0, argument_filters={"task": committer.task}
    )
    assert bytes(logs[1]["args"]["parentHash"]) == round0.model_hash

    # Round 2: honest_b stays silent (missed); the poisoner's second penalty takes it below the threshold.
    grid.nodes[2] = node(honest_b, chain_id, 2, 0.0, silent=True)
    model2, messages2 = train_round(strategy, grid, 2, model)
    assert messages2[0].content.config_records["config"][CONFIG_PARENT_ROUND] == 1
    report2 = [e for e in entries if isinstance(e, RoundReport)][-1]
    assert report2.missed == [honest_b.address]
    assert report2.participants == [honest_a.address]
    assert report2.penalized == [poisoner.address] and report2.suspended == [poisoner.address]
    np.testing.assert_allclose(model2["w"], model["w"] + np.float32(0.1), rtol=1e-6)
    assert ledger.round_count(client, committer.task) == 3


def test_screening_sorts_replies_and_names_every_reason() -> None:
    grid = FakeGrid({})
    outgoing = {
        n: Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="train")
        for n in range(1, 7)
    }

    def reply(n: int, arrays: dict | None = None, metrics: dict | None = None) -> Message:
        content = RecordDict()
        if arrays is not None:
            content["arrays"] = arrays_to_record(arrays)
        if metrics is not None:
            content["metrics"] = MetricRecord(metrics)
        return Message(content, reply_to=outgoing[n])

    good = {k: v + 1 for k, v in INITIAL.items()}
    replies = [
        reply(1, good, {"num-examples": 5}),
        reply(2, {"w": np.zeros((2, 2), np.float32), "b": INITIAL["b"]}, {"num-examples": 5}),
        reply(3, good, {}),
        reply(4, good),
        Message(
            Error(code=1, reason="Traceback ...\nFlchainError: node is not active"), reply_to=outgoing[5]
        ),
        reply(6, good, {"num-examples": 5}),
    ]
    admitted = {n: f"0x{n:040x}" for n in range(1, 6)}  # node 6 never proved an address
    out = screen_replies(replies, admitted, INITIAL, ScreeningPolicy())
    assert [r.metadata.src_node_id for r in out.accepted] == [1]
    assert out.weights == {admitted[1]: 5.0} and set(out.updates) == {admitted[1]}
    assert "shape (2, 2), expected (3, 2)" in out.dropped[admitted[2]]
    assert "num-examples" in out.dropped[admitted[3]]
    assert "exactly one ArrayRecord and one MetricRecord" in out.dropped[admitted[4]]
    assert out.dropped[admitted[5]] == "error reply: node is not active"
    assert out.dropped["node 6"] == "reply from an unverified node"
    assert out.penalized == {admitted[2], admitted[3], admitted[4]}  # error replies are missed, not penalized
    assert out.answered == {1, 2, 3, 4, 6}
    assert grid.sent == []


def test_a_claim_of_a_billion_examples_buys_no_more_than_the_cap(chain: LocalChain, tmp_path: Path) -> None:
    """Plain FedAvg weights replies by their claimed example counts; a claim counts at most
    claim_cap (2) x the round's median claim, so a liar cannot own the aggregate."""
    chain_id = chain.client.deployment.chain_id
    nodes = new_nodes(chain, 4)
    grid = FakeGrid({i + 1: node(n, chain_id, i + 1, 0.1, examples=10) for i, n in enumerate(nodes[:3])})
    grid.nodes[4] = node(nodes[3], chain_id, 4, 1.0, examples=10**9)
    strategy = fedavg_on_new_task(chain, tmp_path, b"\x02", 4, RoundPolicy(min_nodes=4, auth_timeout=5))
    model, _ = train_round(strategy, grid, 1, INITIAL)
    # weights 10, 10, 10 and min(1e9, 2 x 10) = 20: (30 x 0.1 + 20 x 1.0) / 50
    np.testing.assert_allclose(model["w"], np.full((3, 2), 0.46), rtol=1e-5)


def test_the_first_round_gathers_start_nodes_and_later_rounds_go_on_with_min_nodes(
    chain: LocalChain, tmp_path: Path
) -> None:
    """start_nodes = 3, min_nodes = 1: round 1 does not start with the 2 nodes connected (a one-line
    error after auth_timeout), starts once the third connects, and round 2 goes on without a node that
    left."""
    chain_id = chain.client.deployment.chain_id
    a, b, c = new_nodes(chain, 3)
    grid = FakeGrid({1: node(a, chain_id, 1, 0.1), 2: node(b, chain_id, 2, 0.3)})
    policy = RoundPolicy(min_nodes=1, start_nodes=3, auth_timeout=1)
    strategy = fedavg_on_new_task(chain, tmp_path, b"\x03", 1, policy)
    with pytest.raises(FlchainError, match="only 2 verified active nodes after 1 s, 3 needed"):
        train_round(strategy, grid, 1, INITIAL)
    grid.nodes[3] = node(c, chain_id, 3, 0.2)
    model, messages = train_round(strategy, grid, 1, INITIAL)
    assert {m.metadata.dst_node_id for m in messages} == {1, 2, 3}
    del grid.nodes[3]
    _, messages = train_round(strategy, grid, 2, model)
    assert {m.metadata.dst_node_id for m in messages} == {1, 2}


class NoArrays(FedAvg):
    """A user's strategy subclass whose aggregation yields no model (a bug flchain must survive)."""

    def aggregate_train(self, server_round, replies):
        """Drop everything."""
        return None, None


def test_chain_strategy_in_a_users_server_app_with_a_ledger_session(
    chain: LocalChain, tmp_path: Path
) -> None:
    """ChainStrategy.with_ledger(strategy, session) around a user's strategy instance, run by Flower's own
    `start`: the task is created from the initial arrays, the user's evaluate_fn metrics land in the
    reports (one call per round, given the very ArrayRecord the round sends on: no second serialisation
    of the model), and a strategy that returns no arrays commits the unchanged model crediting nobody."""
    from fl_chain.coordinator.ledger_session import LedgerSession
    from fl_chain.protocol.task_identity import identity_hash

    client, chain_id = chain.client, chain.client.deployment.chain_id
    a, b = new_nodes(chain, 2)
    grid = FakeGrid({1: node(a, chain_id, 1, 0.1), 2: node(b, chain_id, 2, 0.3)})
    entries: list = []
    session = LedgerSession(
        client, chain.coordinator, ModelStore(tmp_path / "store"), RunEvents(callback=entries.append)
    )
    calls: list[int] = []
    given: dict[int, object] = {}

    def evaluate_fn(server_round: int, arrays) -> MetricRecord:
        calls.append(server_round)
        given[server_round] = arrays
        return MetricRecord({"acc": float(np.mean(arrays.to_numpy_ndarrays()[0])), "val_loss": 1.0})

    inner = FedAvg(fraction_evaluate=0.0, min_available_nodes=2)
    strategy = ChainStrategy.with_ledger(inner, session, app="user/1")
    result = strategy.start(grid, arrays_to_record(INITIAL), num_rounds=1, evaluate_fn=evaluate_fn)
    task = strategy.committer.task
    assert ledger.task_config_hash(client, task) == identity_hash(INITIAL, "user/1")
    reports = [e for e in entries if isinstance(e, RoundReport)]
    assert [r.round for r in reports] == [0, 1] and calls == [0, 1]
    assert reports[1].accuracy == pytest.approx(0.2) and reports[1].metrics["val_loss"] == 1.0
    assert reports[1].participants == sorted([a.address, b.address])
    assert result.evaluate_metrics_serverapp[1]["acc"] == pytest.approx(0.2)
    assert given[1] is result.arrays
    assert isinstance(entries[-1], RunEnd) and entries[-1].ok

    entries.clear()
    broken = ChainStrategy.with_ledger(NoArrays(fraction_evaluate=0.0, min_available_nodes=2), session)
    broken.start(grid, arrays_to_record(INITIAL), num_rounds=1)
    report = [e for e in entries if isinstance(e, RoundReport)][-1]
    assert report.scores == {} and report.participants == []
    assert ledger.get_round(client, broken.committer.task, 1).model_hash == hash_arrays(INITIAL)


def test_run_end_names_the_error_the_same_way_for_every_server_app() -> None:
    """flchain's own ServerApp and ChainStrategy in a user's report a run's end through one function:
    flchain's own message as is, any other error as 'Type: message'."""
    entries: list = []
    events = RunEvents(callback=entries.append)
    for error in (FlchainError("task 3 has no committed round"), KeyError("w")):
        with pytest.raises(type(error)), run_end_reported(events):
            raise error
    with run_end_reported(events):
        pass
    assert [(e.ok, e.error) for e in entries if isinstance(e, RunEnd)] == [
        (False, "task 3 has no committed round"),
        (False, "KeyError: 'w'"),
        (True, ""),
    ]
