"""ChainWatcher against real anvil processes: resume without gaps or repeats, confirmations,
reorganisations (anvil_reorg) with retraction, a cursor past the head, an RPC that drops."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fl_chain.chain.registry import status_of
from fl_chain.chain.watcher import ChainWatcher
from fl_chain.errors import FlchainError
from tests.chainutil import LocalChain, new_nodes
from tests.rpc_proxy import RpcProxy


def _rpc(chain: LocalChain, method: str, *params) -> object:
    reply = chain.client.w3.provider.make_request(method, list(params))
    assert "error" not in reply, reply
    return reply.get("result")


def test_restart_resumes_without_missing_or_repeating(chain: LocalChain, tmp_path: Path) -> None:
    cursor = tmp_path / "cursor.json"
    first = new_nodes(chain, 2)
    seen = ChainWatcher(chain.client, cursor).poll()
    applied = [e.args["node"] for e in seen if e.name == "NodeApplied"]
    assert applied == [n.address for n in first]
    assert ChainWatcher(chain.client, cursor).poll() == []  # restarted: nothing repeated
    second = new_nodes(chain, 1)
    again = ChainWatcher(chain.client, cursor).poll()
    assert [e.args["node"] for e in again if e.name == "NodeApplied"] == [second[0].address]
    assert all(not e.removed for e in seen + again)
    assert {e.kind for e in seen} >= {"node_applied", "node_status", "reputation"}


def test_events_wait_for_confirmations(chain: LocalChain, tmp_path: Path) -> None:
    watcher = ChainWatcher(chain.client, tmp_path / "c.json", confirmations=3)
    watcher.poll()
    node = new_nodes(chain, 1, approve=False)[0]
    assert [e for e in watcher.poll() if e.name == "NodeApplied"] == []  # 0 confirmations yet
    _rpc(chain, "anvil_mine", "0x2")
    assert [e for e in watcher.poll() if e.name == "NodeApplied"] == []  # 2 confirmations
    _rpc(chain, "anvil_mine", "0x1")
    delivered = [e for e in watcher.poll() if e.name == "NodeApplied"]
    assert [e.args["node"] for e in delivered] == [node.address]


def test_reorg_retracts_orphaned_events_and_delivers_canonical_ones(
    chain: LocalChain, tmp_path: Path
) -> None:
    client = chain.client
    watcher = ChainWatcher(client, tmp_path / "c.json")
    watcher.poll()
    node = new_nodes(chain, 1, approve=False)[0]  # fund (block b) + register (block b+1)
    delivered = [e for e in watcher.poll() if e.name == "NodeApplied"]
    assert len(delivered) == 1
    orphan_hash = delivered[0].block_hash
    # Replace the last block (the registration) with one holding an unrelated transfer.
    transfer = chain.admin.sign_transaction(
        {
            "to": chain.coordinator.address,
            "value": 1,
            "gas": 21_000,
            "gasPrice": client.w3.eth.gas_price,
            "nonce": client.w3.eth.get_transaction_count(chain.admin.address),
            "chainId": client.deployment.chain_id,
        }
    )
    _rpc(chain, "anvil_reorg", 1, [["0x" + transfer.raw_transaction.hex().removeprefix("0x"), 0]])
    after = watcher.poll()
    retracted = [e for e in after if e.removed]
    assert [e.name for e in retracted if e.name == "NodeApplied"] == ["NodeApplied"]
    assert all(e.block_hash == orphan_hash for e in retracted)
    assert status_of(client, node.address) == "None"  # the registration is gone from the chain
    # The node registers again: delivered from the new canonical block.
    client.transact(node, client.registry.functions.register((1, 1, 1), ""))
    redelivered = [e for e in watcher.poll() if e.name == "NodeApplied"]
    assert len(redelivered) == 1 and redelivered[0].block_hash != orphan_hash and not redelivered[0].removed


def test_cursor_past_head_is_a_clear_error(chain: LocalChain, tmp_path: Path) -> None:
    head = chain.client.w3.eth.block_number
    watcher = ChainWatcher(chain.client, tmp_path / "c.json", from_block=head + 100)
    with pytest.raises(FlchainError, match="past the chain head"):
        watcher.poll()


def test_rpc_that_drops_is_retried_without_skipping(chain: LocalChain, tmp_path: Path, anvil_process) -> None:
    from fl_chain.chain.client import ChainClient, connect

    proxy = RpcProxy(anvil_process.port)
    client = ChainClient(connect(f"http://127.0.0.1:{proxy.port}"), chain.client.deployment)
    watcher = ChainWatcher(client, tmp_path / "c.json")
    watcher.poll()
    proxy.up.clear()  # the RPC goes away
    nodes = new_nodes(chain, 2, approve=False)  # events happen meanwhile (sent directly to anvil)
    retries: list[float] = []
    got = []

    def on_retry(message: str, wait: float) -> None:
        retries.append(wait)
        if len(retries) == 2:
            proxy.up.set()  # the RPC comes back

    watcher.run(got.append, stop=lambda: len([e for e in got if e.name == "NodeApplied"]) >= 2,
                interval=0.05, on_retry=on_retry)  # fmt: skip
    assert retries[:2] == [0.05, 0.1]  # exponential backoff
    assert [e.args["node"] for e in got if e.name == "NodeApplied"] == [n.address for n in nodes]


def test_websocket_subscription_wakes_the_watcher(chain: LocalChain, tmp_path: Path, anvil_process) -> None:
    import time

    watcher = ChainWatcher(chain.client, tmp_path / "c.json")
    watcher.poll()
    got: list = []
    started = time.monotonic()

    def produce() -> None:
        time.sleep(1.0)
        new_nodes(chain, 1, approve=False)

    threading.Thread(target=produce, daemon=True).start()
    watcher.run(
        got.append,
        stop=lambda: any(e.name == "NodeApplied" for e in got) or time.monotonic() - started > 20,
        ws_url=f"ws://127.0.0.1:{anvil_process.port}",
    )
    applied = [e for e in got if e.name == "NodeApplied"]
    assert len(applied) == 1
    assert time.monotonic() - started < 10


def test_interval_blocks_with_confirmations(tmp_path: Path) -> None:
    """A PoW-style chain (blocks every 0.5 s): an event arrives only after N more blocks."""
    import time

    from fl_chain.chain.setup.localnode import free_port, start_chain
    from fl_chain.proctree import stop_pid
    from tests.chainutil import fresh_deployment

    process = start_chain("anvil", free_port(), tmp_path / "anvil.log", block_time=0.5)
    try:
        chain = fresh_deployment(process)
        watcher = ChainWatcher(chain.client, tmp_path / "c.json", confirmations=2)
        watcher.poll()
        node = new_nodes(chain, 1, approve=False)[0]
        applied_block = chain.client.w3.eth.block_number
        delivered, deadline = [], time.monotonic() + 15
        while not delivered and time.monotonic() < deadline:
            delivered = [e for e in watcher.poll() if e.name == "NodeApplied"]
            time.sleep(0.1)
        assert [e.args["node"] for e in delivered] == [node.address]
        assert chain.client.w3.eth.block_number >= delivered[0].block_number + 2 >= applied_block + 1
    finally:
        stop_pid(process.pid)
