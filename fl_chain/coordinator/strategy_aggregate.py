"""The wrapped Flower strategy's aggregate of a round's accepted replies, as flchain commits and sends it
on: in the model's own dtypes and array order, the strategy's own ArrayRecord kept when nothing changed
the model after it (so a 40 MB model is not serialised twice), and a verified round's model re-derived
by defence/derivation.py's canonical FedAvg."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from logging import ERROR, WARNING

import numpy as np
from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fl_chain.coordinator.screening import Screened
from fl_chain.defence import derivation
from fl_chain.wire.records import arrays_to_record, record_views

Model = dict[str, np.ndarray]


@dataclass(frozen=True)
class Aggregate:
    """A round's aggregate: the model, the wrapped strategy's metrics, whether it produced one, and its
    own ArrayRecord when `model` is exactly that record's arrays (views, same dtypes and order)."""

    model: Model
    metrics: MetricRecord | None
    aggregated: bool
    record: ArrayRecord | None = None

    def as_record(self, model: Model) -> ArrayRecord:
        """`model` (this aggregate's, or one made from it) as the ArrayRecord Flower sends next: the
        wrapped strategy's own when `model` is still exactly its arrays (no noise, no shortened step, not
        re-derived), so the model is not serialised a second time; otherwise a new one."""
        if self.record is not None and model.keys() == self.model.keys():
            if all(model[k] is self.model[k] for k in model):
                return self.record
        return arrays_to_record(model)


def aggregate_replies(
    inner: Strategy,
    previous: Mapping[str, np.ndarray],
    on_chain_round: int,
    screened: Screened,
    weights: dict[str, int] | None = None,
) -> Aggregate:
    """The wrapped strategy `inner`'s aggregate of `screened`'s accepted replies, in the dtypes of
    `previous` (so the committed hash is over exactly what the nodes receive next), and whether there was
    one; else the previous model. With `weights` (a verified round) the model is defence/derivation.py's
    FedAvg of the accepted updates, which validators re-derive bit for bit; the wrapped strategy (FedAvg
    or FedProx) then only aggregates the replies' metrics."""
    if not screened.accepted:
        log(WARNING, "flchain: round %s has no usable update; the model is unchanged", on_chain_round)
        return Aggregate(dict(previous), None, False)
    arrays, metrics = inner.aggregate_train(on_chain_round, screened.accepted)
    if weights is not None:
        return Aggregate(derivation.aggregate(previous, screened.updates, weights), metrics, True)
    # read-only views of the aggregate's own bytes: a copy of the model (40 MB at 10M parameters)
    # would be made only to be serialised again for the next round
    aggregated = record_views(arrays) if arrays is not None else {}
    if set(aggregated) != set(previous):
        log(
            ERROR,
            "flchain: %s returned %s in round %s; the model is unchanged and nobody is credited",
            type(inner).__name__,
            "no arrays" if arrays is None else f"arrays {sorted(aggregated)} for {sorted(previous)}",
            on_chain_round,
        )
        return Aggregate(dict(previous), metrics, False)
    model = {k: aggregated[k].astype(v.dtype, copy=False) for k, v in previous.items()}
    # in the model's dtypes and array order (an app may read the arrays as a list): sent on as it is
    same = list(aggregated) == list(model) and all(model[k] is aggregated[k] for k in model)
    return Aggregate(model, metrics, True, arrays if same else None)
