"""Reputation x reliability selection, exploration, and capacity-sized local work."""

from __future__ import annotations

from collections import Counter

from fl_chain.defence.selection import NodeStats, Selector, local_steps


def _draws(selector: Selector, candidates, reputation, n: int = 1500) -> Counter:
    counts: Counter = Counter()
    for _ in range(n):
        counts.update(selector.select(candidates, reputation))
    return counts


def test_higher_reputation_is_sampled_more_often() -> None:
    nodes = [f"n{i}" for i in range(6)]
    reputation = {n: 0.2 + 0.15 * i for i, n in enumerate(nodes)}
    selector = Selector(fraction=0.34, min_nodes=1, seed=1)
    for n in nodes:  # past the warm-up, so only reputation and reliability matter
        selector.stats[n] = NodeStats(selected=5, answered=5)
    counts = _draws(selector, nodes, reputation)
    frequencies = [counts[n] for n in nodes]
    assert frequencies == sorted(frequencies)
    assert frequencies[-1] > 3 * frequencies[0]


def test_a_node_that_times_out_is_sampled_less() -> None:
    nodes = [f"n{i}" for i in range(5)]
    selector = Selector(fraction=0.4, seed=2)
    for n in nodes:
        selector.stats[n] = NodeStats(selected=10, answered=10)
    selector.record(["n0"] * 1, [])  # one more selection without an answer...
    for _ in range(9):
        selector.record(["n0"], [])  # ...and nine more
    counts = _draws(selector, nodes, dict.fromkeys(nodes, 0.8))
    assert counts["n0"] < 0.75 * min(counts[n] for n in nodes[1:])
    assert counts["n0"] > 0  # exploration keeps it in play


def test_new_nodes_are_explored() -> None:
    nodes = ["old-a", "old-b", "old-c", "new"]
    selector = Selector(fraction=0.25, seed=3)
    for n in nodes[:3]:
        selector.stats[n] = NodeStats(selected=20, answered=20)
    counts = _draws(selector, nodes, {"old-a": 0.9, "old-b": 0.9, "old-c": 0.9, "new": 0.0}, n=800)
    assert counts["new"] > 100  # reputation 0 but never tried: weighted like the mean


def test_k_respects_fraction_and_minimum() -> None:
    selector = Selector(fraction=0.1, min_nodes=3, seed=4)
    assert len(selector.select([f"n{i}" for i in range(10)], {})) == 3
    assert len(Selector(fraction=0.5, seed=4).select([f"n{i}" for i in range(10)], {})) == 5
    assert selector.select([], {}) == []


def test_local_work_follows_capacity() -> None:
    assert local_steps(samples_per_sec=640, round_seconds=2.0, batch_size=32) == 40
    assert local_steps(samples_per_sec=160, round_seconds=2.0, batch_size=32) == 10
    assert local_steps(samples_per_sec=5, round_seconds=2.0, batch_size=32) == 1
    assert local_steps(samples_per_sec=0, round_seconds=2.0, batch_size=32) is None  # undeclared: epochs
    assert local_steps(samples_per_sec=640, round_seconds=0, batch_size=32) is None  # sizing off


def test_capacity_benchmark_measures_throughput() -> None:
    from fl_chain.node.capacity import measure_samples_per_sec

    assert measure_samples_per_sec(seconds=0.2) > 100
