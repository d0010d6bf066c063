"""The evaluate side of ChainStrategy: the coordinator's own view of a model (flchain's tasks: validation
loss for scoring, test loss and accuracy for the reports, the root set) and a Flower App's own
`evaluate_fn`, called once per round whoever asks (the round report, then Flower's evaluation hook)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, MetricRecord

from fl_chain.defence.anchor import RootAnchor
from fl_chain.wire.records import arrays_to_record
from fl_chain.wire.report import metric_fields

Arrays = Mapping[str, np.ndarray]
EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]


@dataclass(frozen=True)
class Evaluation:
    """The coordinator's own view of a model: validation loss (scoring) and test (loss, accuracy)."""

    test_metrics: Callable[[Arrays], tuple[float, float]] | None = None
    validation_loss: Callable[[Arrays], float] | None = None
    root: RootAnchor | None = None  # the server's root update g0 (defence/anchor.py), if it has a root set


class RoundMetrics:
    """Each round's model metrics for the reports: the Evaluation's test metrics if it has them, else
    the app's `evaluate_fn` (given to `ChainStrategy.start`), whose result is kept per round so Flower's
    own evaluation hook does not run it a second time."""

    def __init__(self, evaluation: Evaluation) -> None:
        """`evaluation`: the coordinator's own hooks (flchain's tasks); an app's have none of them."""
        self.evaluation = evaluation
        self.evaluate_fn: EvaluateFn | None = None
        self._results: dict[int, MetricRecord | None] = {}  # Flower round -> the app's metrics

    def app_metrics(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """The app's metrics of round `server_round`'s model (None without an evaluate_fn)."""
        if self.evaluate_fn is None:
            return None
        if server_round not in self._results:
            self._results[server_round] = self.evaluate_fn(server_round, arrays)
        return self._results[server_round]

    def flower_hook(self) -> EvaluateFn | None:
        """What Flower's `start` gets as its evaluate_fn: the metrics the round report already computed."""
        return self.app_metrics if self.evaluate_fn is not None else None

    def report_fields(self, server_round: int, model: Arrays, record: ArrayRecord) -> dict[str, Any]:
        """The metric fields of a RoundReport for the model of `server_round`: `model` as arrays (the
        coordinator's own test metrics read them) and `record`, the same model as the ArrayRecord Flower
        sends next (an app's evaluate_fn gets it, as Flower's own evaluation would; not a second copy)."""
        if self.evaluation.test_metrics is not None:
            loss, accuracy = self.evaluation.test_metrics(model)
            return {"loss": loss, "accuracy": accuracy}
        return metric_fields(self.app_metrics(server_round, record))

    def app_loss(self, server_round: int) -> Callable[[Arrays], float | None] | None:
        """The 'loss' metric of the app's evaluate_fn for any model, called afresh (not kept) with
        `server_round`; None without an evaluate_fn."""
        evaluate_fn = self.evaluate_fn
        if evaluate_fn is None:
            return None

        def loss(arrays: Arrays) -> float | None:
            """The app's 'loss' for `arrays`, None if it reports none."""
            metrics = evaluate_fn(server_round, arrays_to_record(arrays))
            value = metrics.get("loss") if metrics is not None else None
            return float(value) if isinstance(value, int | float) else None

        return loss
