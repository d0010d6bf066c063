"""The server's anchor: each round the coordinator trains the current global model on a small clean
root set it controls (FLTrust, Cao et al., NDSS 2021), with the same local settings as the nodes. The
root update g0 is the yardstick for contribution (cosine with g0), for evidence of harm (fl/evidence.py)
and for trust-weighted aggregation (fl/trust.py). For the embedded digits task the root set is the
server's validation split; a user task's `server_data` validation split plays the same role."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fl_chain.store import hash_arrays

Arrays = Mapping[str, np.ndarray]
RootTrainer = Callable[[Arrays, Mapping[str, Any]], dict[str, np.ndarray]]


def flat_delta(update: Arrays, previous: Arrays) -> np.ndarray:
    """update - previous as one float64 vector (array order of `previous`)."""
    return np.concatenate([(np.asarray(update[k], np.float64) - previous[k]).ravel() for k in previous])


class RootAnchor:
    """g0 for the current global model, computed once per model and training config (the coordinator,
    its scoring and a trust-weighted aggregator may all ask in the same round)."""

    def __init__(self, train_on_root: RootTrainer) -> None:
        self.train_on_root = train_on_root
        self._key: bytes | None = None
        self._delta: np.ndarray | None = None

    def delta(self, previous: Arrays, config: Mapping[str, Any]) -> np.ndarray:
        """Flattened root update g0 = trained - previous."""
        key = hash_arrays(previous) + repr(sorted(config.items())).encode()
        if key != self._key:
            trained = self.train_on_root(previous, config)
            self._key, self._delta = key, flat_delta(trained, previous)
        return self._delta
