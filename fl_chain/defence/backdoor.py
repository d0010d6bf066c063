"""A backdoor filter in FLAME's manner (Nguyen et al., USENIX Security 2022), anchored in the server's root
update g0: the round's updates and g0 are clustered by cosine distance (HDBSCAN, a cluster needs a majority
of the round's updates), and only the updates in g0's cluster are aggregated (the largest cluster when g0
is noise to the clustering; an update HDBSCAN calls noise joins the cluster of its nearest neighbour).
Those kept are clipped to the median update norm of the round, and the aggregate may get Gaussian noise
of `noise` x that norm per coordinate (FLAME's lambda).

None of this is a penalty: an update outside g0's cluster is left out of one round's aggregate and earns no
score for it, nothing more (clustering compares replies with each other, so it is no evidence a node could
be penalized on; defence/evidence.py keeps that anchored in g0 alone). Like FLAME it assumes a majority
of honest replies: with a majority of attackers in one cluster, g0 is noise to it and the largest
cluster, the attackers', is kept. Measured in docs/attacks.md.

Clustering and clipping need only the updates' norms and cosines, read from the round's Gram matrix
(defence/gram.py), and the noise is added a block at a time: no model-sized vector per update.

With `history` (DirectionHistory) the clustering reads each node's history of update directions instead
of its update alone: the sum of its unit updates over the rounds it sent one, beside the sum of g0's.
Late in a run one round cannot tell a backdoor from an honest update (both nearly orthogonal to g0, and
HDBSCAN's densest core is then the colluders' few, consistent updates); summed over rounds, honest noise
averages out and the colluders' shared direction stands apart (FoolsGold's observation, Fung et al., RAID
2020, here anchored in g0's history as the rest of the filter is in g0). Experimental: it held every
backdoor in a 30-round replay, but in real runs over three seeds no better than one round's clustering,
and a turncoat's honest rounds outweigh the rest of its history (docs/attacks.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fl_chain.defence import gram as _gram
from fl_chain.defence.gram import ROOT, DeltaGram, vector_gram
from fl_chain.defence.vectors import flat_delta

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class BackdoorPolicy:
    """`enabled`: filter and clip each round; `noise`: FLAME's lambda (0: no noise); `history`: cluster
    each node's history of update directions (DirectionHistory) rather than the round's updates. Off by
    default: it leaves honest updates out too, which costs accuracy on non-IID data (docs/attacks.md)."""

    enabled: bool = False
    noise: float = 0.0
    history: bool = False


class DirectionHistory:
    """Per node, the sum of its unit updates over the rounds it sent one, and the sum of g0's unit
    updates over every round (float32, one model-sized vector per node and one for g0: the memory this
    option costs). Keyed by participant address; a resumed run starts a new history."""

    def __init__(self) -> None:
        """An empty history."""
        self.nodes: dict[str, np.ndarray] = {}
        self.root: np.ndarray | None = None

    def add(self, updates: Mapping[str, Arrays], previous: Arrays, root: np.ndarray) -> DeltaGram:
        """Add this round's updates (who -> arrays, read against `previous`) and g0 (`root`, flat), and
        return the Gram matrix of the histories of the nodes in `updates` with g0's as ROOT. A zero update
        adds nothing (it has no direction)."""
        for who, arrays in updates.items():
            delta = flat_delta(arrays, previous)
            norm = float(np.linalg.norm(delta))
            if norm > 0:
                unit = (delta / norm).astype(np.float32)
                self.nodes[who] = self.nodes[who] + unit if who in self.nodes else unit
        root_norm = float(np.linalg.norm(root))
        if root_norm > 0:
            unit = (np.asarray(root, np.float64).reshape(-1) / root_norm).astype(np.float32)
            self.root = unit if self.root is None else self.root + unit
        size = np.size(root)
        rows = {w: self.nodes.get(w, np.zeros(size, np.float32)) for w in updates}
        return vector_gram(rows, self.root if self.root is not None else np.zeros(size, np.float32))


def root_cluster(gram: DeltaGram) -> set[str]:
    """Who is in g0's cluster of the updates (the participants' rows of `gram`, its ROOT row g0) by cosine
    distance; with g0 outside every cluster, the largest cluster; with no cluster at all (or fewer than
    3 updates), all.
    An update HDBSCAN calls noise joins the cluster when its nearest neighbour is in it: HDBSCAN leaves
    some points of a tight cluster out as noise, and FLAME's rule then left 35 of 100 honest updates out
    of a clean 10-round run where this leaves 6 (docs/attacks.md)."""
    who = list(gram.members)
    if len(who) < 3:
        return set(who)
    distances = np.clip(1.0 - gram.cosines([ROOT, *who]), 0.0, 2.0)
    labels = hdbscan_labels(distances, len(who) // 2 + 1)
    if labels[0] >= 0:
        chosen = labels[0]
    elif (labels[1:] >= 0).any():
        nodes = labels[1:]
        chosen = int(np.bincount(nodes[nodes >= 0]).argmax())
    else:
        return set(who)
    inside = set(np.flatnonzero(labels == chosen).tolist())
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    return {w for j, w in enumerate(who, 1) if j in inside or (labels[j] < 0 and int(nearest[j]) in inside)}


def hdbscan_labels(distances: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """HDBSCAN's labels (-1: noise) for a precomputed distance matrix, with FLAME's settings."""
    from sklearn.cluster import HDBSCAN

    return (
        HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=1,
            metric="precomputed",
            allow_single_cluster=True,
            copy=True,
        )
        .fit(distances)
        .labels_
    )


def median_norm(gram: DeltaGram) -> float:
    """The median norm of the round's updates (the participants' rows of `gram`): FLAME's clipping bound
    (a majority of honest replies holds it near an honest update's size; a boosted minority cannot raise
    it)."""
    who = gram.members
    return float(np.median([gram.norm(w) for w in who])) if who else 0.0


def clip_factors(gram: DeltaGram, keep: set[str], bound: float) -> dict[str, float]:
    """who -> the factor shortening its update (its row of `gram`) to `bound`, for those of `keep` above
    it."""
    factors = {}
    for who in keep:
        norm = gram.norm(who)
        if bound > 0 and norm > bound:
            factors[who] = bound / norm
    return factors


def noise_vector(size: int, bound: float, noise: float, seed: tuple[int, ...]) -> np.ndarray:
    """FLAME's Gaussian noise for the aggregate: std `noise` x `bound` per coordinate, drawn from `seed`
    (the same round of the same run draws the same noise)."""
    return np.random.default_rng(list(seed)).normal(0.0, noise * bound, size)


def noised(
    model: Arrays, previous: Arrays, bound: float, noise: float, seed: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """`model` with FLAME's noise added: the values of `noise_vector` (one draw from `seed` over every
    parameter, in the array order of `previous`), drawn a block at a time, so no model-sized float64
    vector is formed. Each parameter is previous + (model - previous) + noise in float64, cast to
    `previous`'s dtype, as the whole-vector formula computes it elementwise: the same bits."""
    rng = np.random.default_rng(list(seed))
    out = {}
    for name, ref in previous.items():
        before, after = np.asarray(ref).reshape(-1), np.asarray(model[name]).reshape(-1)
        target = np.empty(before.size, np.asarray(ref).dtype)
        for lo in range(0, before.size, _gram.BLOCK):
            hi = min(lo + _gram.BLOCK, before.size)
            base = before[lo:hi].astype(np.float64)
            step = np.subtract(after[lo:hi], before[lo:hi], dtype=np.float64)
            target[lo:hi] = base + step + rng.normal(0.0, noise * bound, hi - lo)
        out[name] = target.reshape(np.shape(ref))
    return out
