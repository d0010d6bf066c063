"""NodeReads (the flchain mod's one batched chain read, hand-encoded) answers what web3 reads from the
same contracts on a real anvil, including unknown tasks and rounds, another chain and a reset chain;
and the mod's module imports neither web3 nor eth-account (Flower imports it in every app process)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fl_chain.chain import ledger, registry
from fl_chain.chain.ledger import ZERO_HASH, commit_round, create_task
from fl_chain.chain.node_reads import NodeReads
from fl_chain.errors import FlchainError
from tests.chainutil import LocalChain, new_nodes


def _reads(
    chain: LocalChain, chain_id: int | None = None, rpc: str | None = None, patience: float = 60.0
) -> NodeReads:
    deployment = chain.client.deployment
    return NodeReads(
        rpc or deployment.rpc_url,
        chain_id if chain_id is not None else deployment.chain_id,
        deployment.contracts["NodeRegistry"],
        deployment.contracts["ModelLedger"],
        "deployment.json",
        patience=patience,
    )


def test_round_view_matches_web3_reads(chain: LocalChain) -> None:
    client = chain.client
    active, pending = new_nodes(chain, 1)[0], new_nodes(chain, 1, approve=False)[0]
    task = create_task(client, chain.coordinator, b"\x07" * 32, "file:///tmp/x/")
    commit_round(client, chain.coordinator, task, 0, b"\x09" * 32, "", ZERO_HASH, {})
    reads = _reads(chain)

    view = reads.round_view(active.address, task, 0)
    assert view.status == registry.status_of(client, active.address) == "Active"
    assert view.config_hash == ledger.task_config_hash(client, task) == b"\x07" * 32
    assert view.model_hash == ledger.get_round(client, task, 0).model_hash == b"\x09" * 32
    # lowercase addresses (what a keystore file holds) read the same
    assert reads.status(pending.address.lower()) == registry.status_of(client, pending.address) == "Pending"
    assert reads.status("0x" + "ab" * 20) == "None"

    missing_round = reads.round_view(active.address, task, 5)
    assert missing_round.config_hash == b"\x07" * 32 and missing_round.model_hash is None
    missing_task = reads.round_view(active.address, task + 10, 0)
    assert missing_task.config_hash is None and missing_task.model_hash is None


def test_wrong_chain_reset_chain_and_unreachable_node_are_one_line_errors(chain: LocalChain) -> None:
    address = chain.coordinator.address
    with pytest.raises(FlchainError, match=r"is for chain id 999, but .* is chain id \d+"):
        _reads(chain, chain_id=999).status(address)
    reset = NodeReads(
        chain.client.deployment.rpc_url,
        chain.client.deployment.chain_id,
        "0x" + "12" * 20,
        "0x" + "34" * 20,
        "deployment.json",
    )
    with pytest.raises(
        FlchainError, match=r"no NodeRegistry at 0x1212.* restarted or reset since deployment"
    ):
        reset.status(address)
    started = time.monotonic()
    with pytest.raises(FlchainError, match=r"cannot reach the Ethereum node at http://127.0.0.1:9/"):
        _reads(chain, rpc="http://127.0.0.1:9/", patience=1.0).status(address)
    assert 0.5 < time.monotonic() - started < 5  # waited (with backoff) for a restart, then gave up
    with pytest.raises(FlchainError, match=r"expected http://HOST:PORT"):
        _reads(chain, rpc="ws://127.0.0.1:8545")


def test_the_mod_imports_neither_web3_nor_eth_account() -> None:
    code = (
        "import sys; from fl_chain.ext import flchain_mod, make_flchain_mod; "
        "print(sorted(m for m in ('web3', 'eth_account') if m in sys.modules)); "
        # what signing a reply loads (eth-account signs; remembering the claim must not pull in web3)
        "import fl_chain.protocol.update_signing, fl_chain.node.claims_file; "
        "print('web3' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert out.stdout.split() == ["[]", "False"]
