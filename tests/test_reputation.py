"""Reputation beyond a moving average: decay for missed rounds, penalties, automatic suspension,
reinstatement by the registrar only; on-chain state equals the Python reference after random rounds."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fl_chain.chain import charges
from fl_chain.chain.charges import penalty_lists
from fl_chain.chain.registry import status_of
from fl_chain.chain.setup.localnode import ChainProcess
from fl_chain.errors import FlchainError
from fl_chain.protocol.fixedpoint import SCALE
from fl_chain.protocol.reputation_model import ReputationModel, ReputationParams
from tests.chainutil import LocalChain, fresh_deployment, new_nodes

ZERO = b"\0" * 32


class Round:
    """Commits consecutive rounds of one task."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        client = chain.client
        client.transact(chain.coordinator, client.ledger.functions.createTask(b"\x01" * 32, "", 0, bytes(32)))
        self.task = client.ledger.functions.taskCount().call()
        self.number = 0
        self.parent = ZERO

    def commit(self, scores: list[tuple[str, int]] = (), missed=(), penalized=()):
        model = (self.number + 1).to_bytes(32, "big")
        ordered = sorted(scores, key=lambda x: int(x[0], 16))
        fn = self.chain.client.ledger.functions.commitRound(
            self.task,
            self.number,
            model,
            "",
            self.parent,
            [a for a, _ in ordered],
            [s for _, s in ordered],
            list(missed),
            list(penalized),
            charges.newcomers(self.chain.client, self.task, [a for a, _ in ordered]),
        )
        receipt = self.chain.client.transact(self.chain.coordinator, fn)
        self.number, self.parent = self.number + 1, model
        return receipt


def test_decay_penalty_suspension_and_reinstatement(chain: LocalChain) -> None:
    client = chain.client
    rep = client.reputation.functions
    nodes = [n.address for n in new_nodes(chain, 3)]
    model = ReputationModel(ReputationParams())
    for n in nodes:
        model.approve(n)
    rounds = Round(chain)
    # Round 0 scores every node at its current value (no change): it makes them members of the task,
    # and only members can be charged as missed or penalized in it.
    rounds.commit([(n, 500_000) for n in nodes])

    receipt = rounds.commit([(nodes[0], SCALE)], missed=[nodes[1]], penalized=[nodes[2]])
    model.apply_round([(nodes[0], SCALE)], [nodes[1]], [nodes[2]])
    assert [rep.reputationOf(n).call() for n in nodes] == [model.values[n] for n in nodes]
    assert rep.reputationOf(nodes[1]).call() == 450_000  # 0.5 * (1 - 0.1)
    assert rep.reputationOf(nodes[2]).call() == 250_000  # 0.5 * (1 - 0.5), not below the threshold
    assert [e["node"] for e in client.events(client.reputation, "RoundMissed", receipt)] == [nodes[1]]
    assert [e["node"] for e in client.events(client.reputation, "Penalized", receipt)] == [nodes[2]]

    # A second penalty drops node 2 below 0.25: suspended automatically, in the same transaction.
    receipt = rounds.commit(penalized=[nodes[2]])
    assert status_of(client, nodes[2]) == "Suspended"
    suspended = client.events(client.reputation, "AutoSuspended", receipt)
    assert suspended == [{"node": nodes[2], "value": 125_000}]
    assert client.events(client.registry, "NodeStatusChanged", receipt)[0]["by"] == client.reputation.address
    with pytest.raises(FlchainError, match="InactiveParticipant"):
        rounds.commit([(nodes[2], SCALE)])
    # Missed/penalized entries for an inactive node are skipped, not fatal.
    rounds.commit(penalized=[nodes[2]])
    rounds.commit(missed=[nodes[2]])  # (one list at a time: the ledger refuses a node listed twice)
    assert rep.reputationOf(nodes[2]).call() == 125_000

    # Only the registrar reinstates; reinstatement resets to the starting reputation.
    with pytest.raises(FlchainError, match="lacks REGISTRAR_ROLE"):
        client.transact(chain.coordinator, client.registry.functions.approve(nodes[2]))
    client.transact(chain.admin, client.registry.functions.approve(nodes[2]))
    assert rep.reputationOf(nodes[2]).call() == 500_000 and status_of(client, nodes[2]) == "Active"
    record = rep.recordOf(nodes[2]).call()
    assert (record[2], record[3]) == (0, 2)  # missed count, penalty count

    # Low scores alone lower reputation only down to the threshold: 0.65 -> 0.455 -> 0.3185 -> 0.25.
    for expected in (455_000, 318_500, 250_000, 250_000):
        rounds.commit([(nodes[0], 0)])
        assert rep.reputationOf(nodes[0]).call() == expected
    assert status_of(client, nodes[0]) == "Active"
    rounds.commit(missed=[nodes[0]])  # ...and then misbehaviour crosses it: 0.25 * 0.9 < 0.25
    assert status_of(client, nodes[0]) == "Suspended"


def test_reputation_writes_are_role_restricted(chain: LocalChain) -> None:
    client = chain.client
    node = new_nodes(chain, 1)[0]
    rep = client.reputation.functions
    for fn, role in (
        (rep.recordRound([node.address], [1], [], []), "LEDGER_ROLE"),
        (rep.statusChanged(node.address, False), "REGISTRY_ROLE"),
        (rep.setParameters((1, 1, 1, 1, 1)), "DEFAULT_ADMIN_ROLE"),
    ):
        for caller in (node, chain.coordinator):
            with pytest.raises(FlchainError, match=f"lacks {role}"):
                client.transact(caller, fn)
    # Only Reputation (SUSPENDER_ROLE) and the registrar may suspend through the registry.
    with pytest.raises(FlchainError, match="lacks REGISTRAR_ROLE"):
        client.transact(chain.coordinator, client.registry.functions.suspend(node.address))


_round = st.tuples(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, SCALE)), max_size=4),
    st.lists(st.integers(0, 3), max_size=2),
    st.lists(st.integers(0, 3), max_size=2),
    st.lists(st.integers(0, 3), max_size=1),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(_round, min_size=1, max_size=6))
def test_on_chain_reputation_equals_python_reference(anvil_process: ChainProcess, rounds) -> None:
    chain = fresh_deployment(anvil_process)
    client = chain.client
    nodes = [n.address for n in new_nodes(chain, 4)]
    model = ReputationModel(ReputationParams())
    for n in nodes:
        model.approve(n)
    committer = Round(chain)
    first = sorted(((n, 500_000) for n in nodes), key=lambda x: int(x[0], 16))
    committer.commit(first)  # makes every node a member of the task (a no-op on reputation)
    model.apply_round(first)
    for scored, missed, penalized, reinstate in rounds:
        scores = {}
        for index, score in scored:
            if model.active[nodes[index]]:
                scores[nodes[index]] = score
        ordered = sorted(scores.items(), key=lambda x: int(x[0], 16))
        # The ledger takes the lists sorted, without duplicates and disjoint (ledger.penalty_lists).
        missed_nodes, penalized_nodes = penalty_lists(
            scores, [nodes[i] for i in missed], [nodes[i] for i in penalized]
        )
        committer.commit(ordered, missed_nodes, penalized_nodes)
        model.apply_round(ordered, missed_nodes, penalized_nodes)
        for i in reinstate:
            if not model.active[nodes[i]]:
                client.transact(chain.admin, client.registry.functions.approve(nodes[i]))
                model.approve(nodes[i])
        for n in nodes:
            assert client.reputation.functions.reputationOf(n).call() == model.values[n]
            assert (status_of(client, n) == "Active") == model.active[n]
