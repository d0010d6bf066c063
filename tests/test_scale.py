"""Scale: the batched registry and reputation views agree with the per-node ones, batched registration
leaves every node Active, and a demo round's JSON-RPC calls do not grow with the registered nodes."""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

from fl_chain.chain import registry, reputation
from fl_chain.chain.deployment import DEPLOYMENT_FILE
from fl_chain.chain.setup import bootstrap
from fl_chain.config import load_config
from fl_chain.demo import run_demo
from fl_chain.protocol.fixedpoint import SCALE
from fl_chain.wire.report import RoundReport, RunEntry
from tests.chainutil import LocalChain, new_nodes
from tests.rpc_proxy import RpcProxy


def test_batched_registration_leaves_every_node_active(chain: LocalChain) -> None:
    """30 nodes go out in batches of explicit-nonce transactions; all end Active, in listing order."""
    seen: list[tuple[int, int]] = []
    started = time.monotonic()
    nodes = bootstrap.register_nodes(
        chain.client, 30, progress=lambda done, total: seen.append((done, total))
    )
    assert time.monotonic() - started < 30
    addresses = [n.address for n in nodes]
    assert addresses == sorted(addresses, key=lambda a: int(a, 16))
    assert all(registry.status_of(chain.client, a) == "Active" for a in addresses)
    assert seen[-1] == (30, 30)
    assert registry.node_count(chain.client) == 30


def test_batched_views_match_per_node_views(chain: LocalChain) -> None:
    """statusesOf and reputationsOf return, in order, what statusOf and reputationOf return one by one,
    for Active, Pending, Suspended and never-registered addresses, and after reputation changed."""
    active = new_nodes(chain, 4)
    pending = new_nodes(chain, 2, approve=False)
    registry.registrar_action(chain.client, chain.admin, "suspend", active[3].address)
    stranger = "0x" + "ab" * 20
    # One scored round moves some reputations away from the starting value.
    fns = chain.client.reputation.functions
    scores = [SCALE, SCALE // 4]
    chain.client.transact(chain.admin, fns.grantRole(fns.LEDGER_ROLE().call(), chain.admin.address))
    chain.client.transact(
        chain.admin, fns.recordRound([active[0].address, active[1].address], scores, [active[2].address], [])
    )
    addresses = [n.address for n in active + pending] + [registry._address(stranger)]
    batched = registry.statuses_of(chain.client, addresses)
    assert list(batched) == addresses
    assert batched == {a: registry.status_of(chain.client, a) for a in addresses}
    assert set(batched.values()) == {"Active", "Pending", "Suspended", "None"}
    assert registry.active_of(chain.client, addresses) == {
        a: registry.status_of(chain.client, a) == "Active" for a in addresses
    }
    values = reputation.reputations(chain.client, addresses)
    assert values == {a: reputation.reputation_of(chain.client, a) for a in addresses}
    assert len(set(values.values())) > 1  # the round changed some of them
    assert reputation.reputations(chain.client, []) == {}


def _rpc_per_round(tmp_path: Path, clients: int) -> tuple[list[int], int]:
    """The demo with `clients` registered nodes and ~4 sampled per round, its JSON-RPC calls counted by
    a proxy in front of anvil: (calls per round, nodes sampled in the last round)."""
    home = tmp_path / f"n{clients}"
    config = load_config(None)
    config.federation.rounds = 3
    # Commits on the critical path: with the overlap, nodes poll for a parent still in flight and the
    # count follows the machine's load (rounds of 11 to 85 calls measured), not the registered nodes.
    config.federation.overlap_commit = False
    config.federation.fraction_train = 4 / clients
    config.task.local_epochs = 1
    local = bootstrap.start_local(home, "anvil")
    proxy = RpcProxy(int(local.process.rpc_url.rsplit(":", 1)[1]))
    local.client.deployment.rpc_url = proxy.url  # what the server and the simulated nodes read
    local.client.deployment.save(home / DEPLOYMENT_FILE)
    counts: list[int] = []
    reports: list[RoundReport] = []

    def on_entry(entry: RunEntry) -> None:
        if isinstance(entry, RoundReport):
            counts.append(proxy.calls)
            reports.append(entry)

    try:
        result = run_demo(config, clients, home, on_entry=on_entry, plot=False, local=local)
    finally:
        local.stop()
        proxy.close()
    assert result.chain_rounds == 4
    last = reports[-1]
    return [b - a for a, b in itertools.pairwise(counts)], len(last.participants + last.missed)


def test_round_rpc_calls_do_not_grow_with_registered_nodes(tmp_path: Path) -> None:
    """20 and 40 registered nodes, 4 sampled per round: a round makes about the same number of JSON-RPC
    calls (the handshake, registry and reputation reads cover the sampled nodes only, in batches)."""
    small, sampled_small = _rpc_per_round(tmp_path, 20)
    large, sampled_large = _rpc_per_round(tmp_path, 40)
    assert sampled_small == sampled_large == 4
    # The same work per round whatever is registered: equal up to retries, far from the 20+ extra calls
    # per round of a read per registered node.
    assert abs(statistics.median(large) - statistics.median(small)) <= 10, (small, large)
    assert max(large) < 200, large
