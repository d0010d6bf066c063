"""A commit whose receipt is lost is reconciled with the chain before any retry: no duplicate, no gap."""

from __future__ import annotations

import threading
import time

from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task, round_count
from tests.chainutil import LocalChain


def _rpc(chain: LocalChain, method: str, *params) -> object:
    return chain.client.w3.provider.make_request(method, list(params))


def test_receipt_lost_then_mined_is_not_sent_twice(chain: LocalChain) -> None:
    client = chain.client
    task = create_task(client, chain.coordinator, b"\x03" * 32, "file:///s/")
    commit_round(client, chain.coordinator, task, 0, b"\x01" * 32, "", ZERO_HASH, {})
    _rpc(chain, "evm_setAutomine", False)
    try:
        # Mine only after the first receipt wait has timed out.
        miner = threading.Timer(1.6, lambda: _rpc(chain, "evm_mine"))
        miner.start()
        started = time.monotonic()
        receipt = commit_round(
            client, chain.coordinator, task, 1, b"\x02" * 32, "", b"\x01" * 32, {}, timeout=0.5
        )
        assert time.monotonic() - started > 1.0  # it did time out and reconcile
        miner.join()
    finally:
        _rpc(chain, "evm_setAutomine", True)
    assert receipt["status"] == 1
    assert round_count(client, task) == 2
    logs = client.ledger.events.RoundCommitted().get_logs(from_block=0, argument_filters={"task": task})
    assert [e["args"]["round"] for e in logs] == [0, 1]


def test_dropped_commit_is_sent_again_once(chain: LocalChain) -> None:
    client = chain.client
    task = create_task(client, chain.coordinator, b"\x04" * 32, "file:///s/")
    commit_round(client, chain.coordinator, task, 0, b"\x01" * 32, "", ZERO_HASH, {})
    _rpc(chain, "evm_setAutomine", False)

    def drop_pending_then_resume() -> None:
        pending = client.w3.eth.get_block("pending", full_transactions=True)["transactions"]
        for tx in pending:
            _rpc(chain, "anvil_dropTransaction", tx["hash"].to_0x_hex())
        _rpc(chain, "evm_setAutomine", True)

    try:
        dropper = threading.Timer(0.8, drop_pending_then_resume)
        dropper.start()
        receipt = commit_round(
            client, chain.coordinator, task, 1, b"\x02" * 32, "", b"\x01" * 32, {}, timeout=0.5
        )
        dropper.join()
    finally:
        _rpc(chain, "evm_setAutomine", True)
    assert receipt["status"] == 1 and round_count(client, task) == 2
    logs = client.ledger.events.RoundCommitted().get_logs(from_block=0, argument_filters={"task": task})
    assert [e["args"]["round"] for e in logs] == [0, 1]
