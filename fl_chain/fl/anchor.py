"""The server's anchor: each round the coordinator trains the current global model on a small clean
root set it controls (FLTrust, Cao et al., NDSS 2021), with the same local settings as the nodes. The
root update g0 is the yardstick for contribution (cosine with g0), for evidence of harm (fl/evidence.py)
and for trust-weighted aggregation (fl/trust.py). For the embedded digits task the root set is the
server's validation split; a user task's `server_data` validation split plays the same role.

Magnitudes are comparable only when the root training does as much work as a node: FLTrust has server
and clients run the same number of local iterations. The coordinator tells the trainer how many examples
a median node trained on this round (NODE_EXAMPLES_KEY in its config); flchain's own trainer runs that
many mini-batches' worth of steps. A trainer that does so is declared with `matches_node_work`; only
then are norm-based rules (boosting and free-riding evidence, influence bounds) applied, because with an
unmatched root set an honest node with 5x the root set's data sends a 5-10x larger update."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fl_chain.store import hash_arrays

Arrays = Mapping[str, np.ndarray]
NODE_EXAMPLES_KEY = "flchain-node-examples"  # a median node's (capped) claimed examples this round
RootTrainer = Callable[[Arrays, Mapping[str, Any]], dict[str, np.ndarray]]


def flat_delta(update: Arrays, previous: Arrays) -> np.ndarray:
    """update - previous as one float64 vector (array order of `previous`)."""
    return np.concatenate([(np.asarray(update[k], np.float64) - previous[k]).ravel() for k in previous])


class RootAnchor:
    """g0 for the current global model, computed once per model and training config (the coordinator,
    its scoring and a trust-weighted aggregator may all ask in the same round)."""

    def __init__(self, train_on_root: RootTrainer, matches_node_work: bool = False) -> None:
        self.train_on_root = train_on_root
        self.matches_node_work = matches_node_work
        self.node_examples: float | None = None  # set by the coordinator once a round's claims are in
        self._key: bytes | None = None
        self._delta: np.ndarray | None = None

    def delta(self, previous: Arrays, config: Mapping[str, Any]) -> np.ndarray:
        """Flattened root update g0 = trained - previous."""
        if self.node_examples is not None:
            config = {**config, NODE_EXAMPLES_KEY: self.node_examples}
        key = hash_arrays(previous) + repr(sorted(config.items())).encode()
        if key != self._key:
            trained = self.train_on_root(previous, config)
            self._key, self._delta = key, flat_delta(trained, previous)
        return self._delta
