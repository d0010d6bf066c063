"""TrustWeighted: FLTrust-style aggregation around any Flower strategy (composition, like Flower's own
differential-privacy wrappers). Before the wrapped strategy aggregates, every reply's update is rescaled
to the server's root update g0 and its weight becomes trust = ReLU(cos(update, g0)); replies without
trust are left out. Around FedAvg this is exactly FLTrust's aggregate; around FedMedian, Krum or
Bulyan the rescaling alone bounds every node's influence. Claimed example counts play no part."""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO, WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fl_chain.defence.anchor import RootAnchor
from fl_chain.defence.trust import rescaled, trust_scores
from fl_chain.defence.vectors import flat_delta, previous_vector, unflatten
from fl_chain.wire.records import WEIGHT_KEY, record_to_arrays, reply_parts, with_update


class TrustWeighted(Strategy):
    """Wraps a Flower strategy; see the module docstring."""

    def __init__(self, inner: Strategy, anchor: RootAnchor, weight_key: str = WEIGHT_KEY) -> None:
        self.inner = inner
        self.anchor = anchor
        self.weight_key = weight_key
        self.min_available_nodes = getattr(inner, "min_available_nodes", 1)
        self._previous: dict[str, np.ndarray] = {}
        self._config: dict = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global model and the training config (the root update uses both); delegate."""
        self._previous, self._config = record_to_arrays(arrays), dict(config)
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Rescale and trust-weight the usable replies, then let the wrapped strategy aggregate them."""
        root = self.anchor.delta(self._previous, self._config)
        usable = [r for r in replies if not r.has_error() and not isinstance(reply_parts(r), str)]
        deltas = {
            i: flat_delta(record_to_arrays(reply_parts(r)[0]), self._previous) for i, r in enumerate(usable)
        }
        trust = trust_scores(deltas, root)
        base = previous_vector(self._previous)
        weighted = [
            with_update(
                r, unflatten(base + rescaled(deltas[i], root), self._previous), trust[i], self.weight_key
            )
            for i, r in enumerate(usable)
            if trust[i] > 0
        ]
        if not weighted:
            log(WARNING, "flchain: no update has positive trust this round; the model is unchanged")
            return None, None
        return self.inner.aggregate_train(server_round, weighted)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate."""
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Delegate."""
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        """The wrapped strategy's summary, with this wrapper named."""
        log(INFO, "\tTrustWeighted (FLTrust) around %s", type(self.inner).__name__)
        self.inner.summary()
