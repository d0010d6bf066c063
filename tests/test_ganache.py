"""The same deploy + commit + event read on ganache, the card's chain."""

from __future__ import annotations

from pathlib import Path

from fl_chain.proctree import pid_alive, stop_pid
from tests.chainutil import SCALE, ema, fresh_deployment, launch, new_nodes


def test_deploy_commit_and_events_on_ganache(tmp_path: Path) -> None:
    process = launch("ganache", tmp_path)
    try:
        chain = fresh_deployment(process)
        client = chain.client
        assert client.w3.eth.chain_id == 1337
        nodes = new_nodes(chain, 2)
        client.transact(
            chain.coordinator, client.ledger.functions.createTask(b"\x01" * 32, "file:///s/", 0, bytes(32))
        )
        zero, h0, h1 = b"\0" * 32, b"\x0a" * 32, b"\x0b" * 32
        ledger = client.ledger.functions
        client.transact(chain.coordinator, ledger.commitRound(1, 0, h0, "", zero, [], [], [], [], []))
        receipt = client.transact(
            chain.coordinator,
            ledger.commitRound(1, 1, h1, "", h0, [n.address for n in nodes], [SCALE, 0], [], [], []),
        )
        committed = client.events(client.ledger, "RoundCommitted", receipt)
        assert committed[0]["modelHash"] == h1 and committed[0]["parentHash"] == h0
        logs = client.ledger.events.ContributionRecorded().get_logs(from_block=0)
        assert [(e["args"]["node"], e["args"]["score"]) for e in logs] == [
            (nodes[0].address, SCALE),
            (nodes[1].address, 0),
        ]
        alpha = client.reputation.functions.alpha().call()
        initial = client.reputation.functions.initialReputation().call()
        assert client.reputation.functions.reputationOf(nodes[0].address).call() == ema(initial, SCALE, alpha)
    finally:
        stop_pid(process.pid)
    assert not pid_alive(process.pid)
