"""The wrapped strategy's aggregate as flchain sends it on (coordinator/strategy_aggregate.py): the
strategy's own ArrayRecord when nothing changed the model after it, a new one otherwise, the previous
model when the strategy returns none or other arrays."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, MetricRecord

from fl_chain.coordinator.screening import Screened
from fl_chain.coordinator.strategy_aggregate import aggregate_replies
from fl_chain.wire.records import arrays_to_record, record_to_arrays

PREVIOUS = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)}


class Returns:
    """A strategy stand-in that aggregates to a fixed record (the claim is about what flchain does with
    the strategy's result, not how the strategy computes it)."""

    def __init__(self, record: ArrayRecord | None) -> None:
        self.record = record

    def aggregate_train(self, server_round: int, replies: list) -> tuple[ArrayRecord | None, MetricRecord]:
        """The fixed record and a metric."""
        return self.record, MetricRecord({"loss": 0.5})


def _screened() -> Screened:
    out = Screened()
    out.accepted = ["a reply"]  # only its presence matters here
    return out


def test_the_strategys_own_record_is_sent_on_when_nothing_changed_the_model() -> None:
    own = arrays_to_record({"w": np.ones((3, 2), np.float32), "b": np.full(2, 2.0, np.float32)})
    result = aggregate_replies(Returns(own), PREVIOUS, 4, _screened())
    assert result.aggregated and result.metrics["loss"] == 0.5
    assert result.as_record(result.model) is own  # not serialised a second time
    # a model changed after aggregation (noise, a shortened step) is a new record of the new arrays
    changed = dict(result.model, b=result.model["b"] * 0.5)
    sent = result.as_record(changed)
    assert sent is not own and np.array_equal(record_to_arrays(sent)["b"], np.full(2, 1.0, np.float32))


def test_a_record_in_other_dtypes_or_order_is_rebuilt_in_the_models() -> None:
    other_dtype = arrays_to_record({"w": np.ones((3, 2), np.float64), "b": np.ones(2, np.float64)})
    result = aggregate_replies(Returns(other_dtype), PREVIOUS, 4, _screened())
    assert result.record is None and result.model["w"].dtype == np.float32
    sent = record_to_arrays(result.as_record(result.model))
    assert list(sent) == ["w", "b"] and sent["w"].dtype == np.float32
    reordered = arrays_to_record({"b": np.ones(2, np.float32), "w": np.ones((3, 2), np.float32)})
    result = aggregate_replies(Returns(reordered), PREVIOUS, 4, _screened())
    assert result.record is None and list(result.model) == ["w", "b"]


def test_no_arrays_or_other_arrays_leave_the_model_unchanged() -> None:
    for record in (None, arrays_to_record({"w": np.ones((3, 2), np.float32)})):
        result = aggregate_replies(Returns(record), PREVIOUS, 4, _screened())
        assert not result.aggregated
        assert all(np.array_equal(result.model[k], PREVIOUS[k]) for k in PREVIOUS)
    nothing = aggregate_replies(Returns(None), PREVIOUS, 4, Screened())  # no usable reply at all
    assert not nothing.aggregated and nothing.metrics is None
