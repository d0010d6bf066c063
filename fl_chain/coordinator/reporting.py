"""What the coordinator tells the run's `RunEvents` sink (wire/report.py): a round's report, and the
run's end, the last event of every run (flchain's own ServerApp and ChainStrategy in anyone's ServerApp
report it here, in one format)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fl_chain.coordinator.committer import Commit
from fl_chain.coordinator.screening import Screened
from fl_chain.errors import FlchainError
from fl_chain.wire.report import RoundReport, RunEnd, RunEvents


def run_error(exc: BaseException) -> str:
    """A failed run's one-line error: flchain's own message, else the exception's type and message."""
    return str(exc) if isinstance(exc, FlchainError) else f"{type(exc).__name__}: {exc}"


@contextmanager
def run_end_reported(run_events: RunEvents) -> Iterator[None]:
    """Emit RunEnd when the block finishes: ok, or the error it raised (which goes on up), so the
    reader of the run events (`flchain server`) never has to read logs to know how a run ended."""
    try:
        yield
    except BaseException as exc:
        run_events.emit(RunEnd(False, run_error(exc)))
        raise
    run_events.emit(RunEnd(True))


def round_report(
    on_chain_round: int,
    screened: Screened,
    scores: Mapping[str, int],
    raw_scores: Mapping[str, float],
    missed: list[str],
    refused: Mapping[str, str],
    reputations: dict[str, int],
    metric_fields: Mapping[str, Any],
    commit: Commit,
) -> RoundReport:
    """The report of a committed training round: who took part and how each reply was judged, the
    model's metrics (`metric_fields`) and what the commit wrote."""
    return RoundReport(
        round=on_chain_round,
        participants=sorted(scores),
        scores=dict(scores),
        refused=dict(refused),
        dropped=screened.dropped,
        missed=missed,
        penalized=sorted(screened.penalized),
        reputations=reputations,
        raw_scores={k: float(v) for k, v in raw_scores.items()},
        clipped={k: round(v, 4) for k, v in screened.clipped.items()},
        signed=sorted(screened.signed),
        **metric_fields,
        **commit.report_fields(),
    )
