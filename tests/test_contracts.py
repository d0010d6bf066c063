"""Contract behaviour on a real anvil node: roles, commit rules, events, reputation arithmetic."""

from __future__ import annotations

import random

import pytest
from eth_account import Account

from fl_chain.chain import charges, ledger
from fl_chain.chain.client import role_id
from fl_chain.chain.registry import status_of
from fl_chain.errors import FlchainError
from fl_chain.protocol.ledger_mode import LedgerMode
from tests.chainutil import SCALE, LocalChain, ema, new_nodes

H = [bytes([i]) * 32 for i in range(256)]
ZERO = b"\0" * 32


def _task(chain: LocalChain, base: str = "file:///store/") -> int:
    client = chain.client
    client.transact(chain.coordinator, client.ledger.functions.createTask(H[9], base, 0, bytes(32)))
    return client.ledger.functions.taskCount().call()


def _commit(
    chain: LocalChain,
    task: int,
    rnd: int,
    model: bytes,
    parent: bytes,
    nodes,
    scores,
    uri="",
    missed=(),
    penalized=(),
):
    client = chain.client
    addresses = [n if isinstance(n, str) else n.address for n in nodes]
    missed = [n if isinstance(n, str) else n.address for n in missed]
    penalized = [n if isinstance(n, str) else n.address for n in penalized]
    fn = client.ledger.functions.commitRound(
        task,
        rnd,
        model,
        uri,
        parent,
        addresses,
        scores,
        missed,
        penalized,
        charges.newcomers(client, task, addresses),
    )
    return client.transact(chain.coordinator, fn)


def test_every_write_rejects_wrong_role(chain: LocalChain) -> None:
    client = chain.client
    stranger = new_nodes(chain, 1)[0]  # an active node, but without any role
    target = new_nodes(chain, 1, approve=False)[0].address
    task = _task(chain)
    writes = {
        "REGISTRAR_ROLE": [
            client.registry.functions.approve(target),
            client.registry.functions.suspend(target),
            client.registry.functions.revoke(target),
        ],
        "DEFAULT_ADMIN_ROLE": [
            client.registry.functions.grantRole(role_id("REGISTRAR_ROLE"), stranger.address),
            client.reputation.functions.setParameters((1, 1, 1, 1, 1)),
            client.ledger.functions.grantRole(role_id("COORDINATOR_ROLE"), stranger.address),
        ],
        "REGISTRY_ROLE": [client.reputation.functions.statusChanged(target, True)],
        "LEDGER_ROLE": [client.reputation.functions.recordRound([target], [1], [], [])],
        "COORDINATOR_ROLE": [
            client.ledger.functions.createTask(H[1], "", 0, bytes(32)),
            client.ledger.functions.setBlobBase(task, "x"),
            client.ledger.functions.commitRound(task, 0, H[1], "", ZERO, [], [], [], [], []),
        ],
    }
    for role, fns in writes.items():
        for fn in fns:
            with pytest.raises(FlchainError, match=f"lacks {role} .AccessControlUnauthorizedAccount"):
                client.transact(stranger, fn)
    # A second coordinator may not write to a task it does not own.
    other = Account.create()
    client.fund(chain.admin, other.address, 10**18)
    client.transact(
        chain.admin, client.ledger.functions.grantRole(role_id("COORDINATOR_ROLE"), other.address)
    )
    with pytest.raises(FlchainError, match="NotTaskOwner"):
        client.transact(
            other, client.ledger.functions.commitRound(task, 0, H[1], "", ZERO, [], [], [], [], [])
        )
    with pytest.raises(FlchainError, match="NotTaskOwner"):
        client.transact(other, client.ledger.functions.setBlobBase(task, "y"))


def test_registry_lifecycle_and_its_errors(chain: LocalChain) -> None:
    client = chain.client
    node = new_nodes(chain, 1, approve=False)[0]
    reg = client.registry.functions
    assert status_of(client, node.address) == "Pending"
    with pytest.raises(FlchainError, match="AlreadyRegistered"):
        client.transact(node, reg.register((1, 1, 1), ""))
    with pytest.raises(FlchainError, match="InvalidCapacity"):
        client.transact(chain.admin, reg.register((0, 1, 1), ""))
    client.transact(chain.admin, reg.approve(node.address))
    assert reg.isActive(node.address).call()
    with pytest.raises(FlchainError, match=r"InvalidTransition.*from=Active, to=Active"):
        client.transact(chain.admin, reg.approve(node.address))
    client.transact(chain.admin, reg.suspend(node.address))
    assert status_of(client, node.address) == "Suspended"
    client.transact(node, reg.register((8, 2048, 50), "grpc://node:1"))  # update capacity while suspended
    status, capacity, _, endpoint = reg.getNode(node.address).call()
    assert (status, tuple(capacity), endpoint) == (3, (8, 2048, 50), "grpc://node:1")
    client.transact(chain.admin, reg.approve(node.address))
    client.transact(chain.admin, reg.revoke(node.address))
    for fn in (reg.approve, reg.suspend, reg.revoke):
        with pytest.raises(FlchainError, match="InvalidTransition"):
            client.transact(chain.admin, fn(node.address))
    with pytest.raises(FlchainError, match="AlreadyRegistered"):
        client.transact(node, reg.register((1, 1, 1), ""))
    with pytest.raises(FlchainError, match="UnknownNode"):
        client.transact(chain.admin, reg.revoke(Account.create().address))


def test_listing_is_paged(chain: LocalChain) -> None:
    nodes = new_nodes(chain, 5, approve=False)
    reg = chain.client.registry.functions
    assert reg.nodeCount().call() == 5
    first, statuses = reg.listNodes(0, 3).call()
    rest, _ = reg.listNodes(3, 3).call()
    beyond, _ = reg.listNodes(10, 3).call()
    assert set(first + rest) == {n.address for n in nodes} and len(first) == 3 and len(rest) == 2
    assert beyond == [] and statuses == [1, 1, 1]


def test_commit_rules_revert_with_custom_errors(chain: LocalChain) -> None:
    nodes = new_nodes(chain, 3)
    pending = new_nodes(chain, 1, approve=False)[0]
    task = _task(chain)
    with pytest.raises(FlchainError, match="ParentMismatch"):
        _commit(chain, task, 0, H[1], H[5], [], [])
    with pytest.raises(FlchainError, match="EmptyModelHash"):
        _commit(chain, task, 0, ZERO, ZERO, [], [])
    _commit(chain, task, 0, H[1], ZERO, [], [])
    with pytest.raises(FlchainError, match=r"RoundOutOfOrder\(task=\d+, expected=1, given=2\)"):
        _commit(chain, task, 2, H[2], H[1], nodes, [1, 2, 3])
    with pytest.raises(FlchainError, match=r"RoundOutOfOrder\(task=\d+, expected=1, given=0\)"):
        _commit(chain, task, 0, H[2], ZERO, [], [])
    with pytest.raises(FlchainError, match="ParentMismatch"):
        _commit(chain, task, 1, H[2], H[7], nodes, [1, 2, 3])
    with pytest.raises(FlchainError, match="InactiveParticipant"):
        ordered = sorted([nodes[0].address, pending.address], key=lambda a: int(a, 16))
        _commit(chain, task, 1, H[2], H[1], ordered, [1, 2])
    with pytest.raises(FlchainError, match="LengthMismatch"):
        _commit(chain, task, 1, H[2], H[1], nodes, [1, 2])
    with pytest.raises(FlchainError, match="ParticipantsNotSorted"):
        _commit(chain, task, 1, H[2], H[1], list(reversed(nodes)), [1, 2, 3])
    with pytest.raises(FlchainError, match="ParticipantsNotSorted"):
        _commit(chain, task, 1, H[2], H[1], [nodes[0], nodes[0]], [1, 2])
    with pytest.raises(FlchainError, match="ScoreOutOfRange"):
        _commit(chain, task, 1, H[2], H[1], nodes, [1, 2, SCALE + 1])
    with pytest.raises(FlchainError, match="UnknownTask"):
        _commit(chain, 999, 0, H[2], ZERO, [], [])
    assert chain.client.ledger.functions.roundCount(task).call() == 1


def test_a_task_keeps_the_ledger_mode_it_was_created_in(chain: LocalChain) -> None:
    """A coordinator cannot commit a round of another mode (e.g. a plain round in a verified task, which
    validators could not re-derive); a verified task's round 0 (the initial model) commits plain."""
    client, fns = chain.client, chain.client.ledger.functions
    tasks = {}
    for mode in LedgerMode:
        receipt = client.transact(chain.coordinator, fns.createTask(H[20 + mode], "", int(mode), H[30]))
        [created] = client.events(client.ledger, "TaskCreated", receipt)
        assert created["mode"] == mode
        tasks[mode] = int(created["task"])
        assert ledger.task_mode(client, tasks[mode]) is mode
    plain, verified, commitment = (tasks[m] for m in LedgerMode)

    def verified_commit(task: int, rnd: int, parent: bytes):
        return fns.commitVerifiedRound(task, rnd, H[30 + rnd], "", parent, [], [], [], [], [], H[40])

    def outcomes_commit(task: int, rnd: int, parent: bytes):
        return fns.commitOutcomes(task, rnd, H[30 + rnd], "", parent, H[41], 1)

    for task, fn in [
        (plain, verified_commit(plain, 0, ZERO)),
        (plain, outcomes_commit(plain, 0, ZERO)),
        (verified, outcomes_commit(verified, 0, ZERO)),
        (commitment, fns.commitRound(commitment, 0, H[30], "", ZERO, [], [], [], [], [])),
        (commitment, verified_commit(commitment, 0, ZERO)),
    ]:
        with pytest.raises(FlchainError, match=rf"WrongMode\(task={task}, mode=\d\)"):
            client.transact(chain.coordinator, fn)
    _commit(chain, verified, 0, H[30], ZERO, [], [])  # a verified task's initial model commits plain
    with pytest.raises(FlchainError, match=rf"WrongMode\(task={verified}, mode=1\)"):
        _commit(chain, verified, 1, H[31], H[30], [], [])
    client.transact(chain.coordinator, verified_commit(verified, 1, H[30]))
    client.transact(chain.coordinator, outcomes_commit(commitment, 0, ZERO))
    assert ledger.round_count(client, verified) == 2 and ledger.round_count(client, commitment) == 1


def test_happy_path_emits_documented_events(chain: LocalChain) -> None:
    client = chain.client
    nodes = new_nodes(chain, 3)
    task = _task(chain, "https://blobs.example/")
    _commit(chain, task, 0, H[1], ZERO, [], [])
    scores = [100_000, 600_000, 900_000]
    receipt = _commit(chain, task, 1, H[2], H[1], nodes, scores)

    committed = client.events(client.ledger, "RoundCommitted", receipt)
    assert len(committed) == 1
    args = committed[0]
    assert (args["task"], args["round"], args["modelHash"], args["parentHash"]) == (task, 1, H[2], H[1])
    assert args["participantCount"] == 3 and args["uri"] == ""

    contributions = client.events(client.ledger, "ContributionRecorded", receipt)
    assert [(e["node"], e["score"]) for e in contributions] == [
        (n.address, s) for n, s in zip(nodes, scores, strict=True)
    ]
    assert all(e["round"] == 1 and e["task"] == task for e in contributions)

    updates = client.events(client.reputation, "ReputationUpdated", receipt)
    alpha = client.reputation.functions.alpha().call()
    initial = client.reputation.functions.initialReputation().call()
    assert [(e["node"], e["value"]) for e in updates] == [
        (n.address, ema(initial, s, alpha)) for n, s in zip(nodes, scores, strict=True)
    ]

    latest, record = client.ledger.functions.latestRound(task).call()
    assert latest == 1 and record[0] == H[2] and record[3] == 3
    assert client.ledger.functions.roundUri(task, 1).call() == "https://blobs.example/" + H[2].hex()
    _commit(chain, task, 2, H[3], H[2], [], [], uri="s3://bucket/model.safetensors")
    assert client.ledger.functions.roundUri(task, 2).call() == "s3://bucket/model.safetensors"
    with pytest.raises(FlchainError, match="UnknownRound"):
        client.call(client.ledger.functions.getRound(task, 3))


def test_reputation_matches_python_reference(chain: LocalChain) -> None:
    client = chain.client
    rng = random.Random(7)
    client.transact(chain.admin, client.reputation.functions.setParameters((300_000, 500_000, 0, 0, 0)))
    nodes = new_nodes(chain, 4)
    alpha = client.reputation.functions.alpha().call()
    expected = {n.address: client.reputation.functions.initialReputation().call() for n in nodes}
    task = _task(chain)
    parent = ZERO
    for rnd in range(6):
        chosen = [n for n in nodes if rng.random() < 0.7] if rnd else []
        scores = [rng.randrange(0, SCALE + 1) for _ in chosen]
        _commit(chain, task, rnd, H[rnd + 1], parent, chosen, scores)
        parent = H[rnd + 1]
        for node, score in zip(chosen, scores, strict=True):
            expected[node.address] = ema(expected[node.address], score, alpha)
    for address, value in expected.items():
        assert client.reputation.functions.reputationOf(address).call() == value


def test_reputation_parameters_are_validated_and_emitted(chain: LocalChain) -> None:
    client = chain.client
    rep = client.reputation.functions
    with pytest.raises(FlchainError, match="InvalidParameter"):
        client.transact(chain.admin, rep.setParameters((0, 1, 0, 0, 0)))
    for bad in (
        (1, SCALE + 1, 0, 0, 0),
        (1, 1, SCALE + 1, 0, 0),
        (1, 1, 0, SCALE + 1, 0),
        (1, 1, 0, 0, SCALE + 1),
    ):
        with pytest.raises(FlchainError, match="InvalidParameter"):
            client.transact(chain.admin, rep.setParameters(bad))
    receipt = client.transact(chain.admin, rep.setParameters((500_000, 250_000, 1, 2, 3)))
    event = client.events(client.reputation, "ParametersChanged", receipt)[0]
    assert (event["alpha"], event["initialReputation"], event["suspendThreshold"]) == (500_000, 250_000, 3)
    assert tuple(rep.parameters().call()) == (500_000, 250_000, 1, 2, 3)
    node = new_nodes(chain, 1)[0]  # enrolled at approval with the new initial value
    assert rep.reputationOf(node.address).call() == 250_000
    hook = client.registry.functions.statusHook().call()
    assert hook == client.reputation.address
    # wired by the constructor; no setter exists (tests/test_deployment_security.py)
    assert "setStatusHook" not in {f.get("name") for f in client.registry.abi}


def test_suspended_or_revoked_node_cannot_be_committed(chain: LocalChain) -> None:
    client = chain.client
    nodes = new_nodes(chain, 2)
    task = _task(chain)
    _commit(chain, task, 0, H[1], ZERO, [], [])
    _commit(chain, task, 1, H[2], H[1], nodes, [1, 2])
    assert client.reputation.functions.isEligible(nodes[0].address).call()
    receipt = client.transact(chain.admin, client.registry.functions.suspend(nodes[0].address))
    assert client.events(client.reputation, "EligibilityChanged", receipt) == [
        {"node": nodes[0].address, "active": False}
    ]
    with pytest.raises(FlchainError, match=f"InactiveParticipant\\(node={nodes[0].address}"):
        _commit(chain, task, 2, H[3], H[2], nodes, [1, 2])
    client.transact(chain.admin, client.registry.functions.approve(nodes[0].address))
    _commit(chain, task, 2, H[3], H[2], nodes, [1, 2])
    client.transact(chain.admin, client.registry.functions.revoke(nodes[1].address))
    with pytest.raises(FlchainError, match="InactiveParticipant"):
        _commit(chain, task, 3, H[4], H[3], nodes, [1, 2])
    assert client.reputation.functions.updatesOf(nodes[0].address).call() == 2
