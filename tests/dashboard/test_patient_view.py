"""The patient page's pure assembly (no database): the plotted B0 is the alert rules' B0."""

import uuid
from datetime import UTC, datetime, timedelta

from backend.dashboard.patient_view import build_trajectory
from backend.domain.alerts.timeline import TreatmentSession
from backend.domain.responses.schemas import ScorePoint
from questionnaires.registry import get_instrument

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _point(days: float, total: int, missing: tuple[str, ...] = ()) -> ScorePoint:
    return ScorePoint(
        response_id=uuid.uuid4(),
        authored_at=T0 + timedelta(days=days),
        total=total,
        band=None,
        prorated=False,
        missing_items=missing,
        instrument_version="1.0.0",
    )


def test_a_partially_missing_score_is_not_marked_as_the_baseline() -> None:
    # QIDS-SR16 scores the sleep domain from the items answered, so item 2 left out still gives
    # a total that is not prorated; the rules never take it as B0 (clinical-spec §2.4).
    complete, partial = _point(-3, 15), _point(-1, 18, ("qids-2",))
    view = build_trajectory(
        element_id="qids",
        instrument=get_instrument("qids-sr16"),
        points=(complete, partial, _point(1, 6)),
        sessions=(TreatmentSession(id="s1", modality="n2o", start=T0),),
        alerts=(),
        baseline_within_days=7,
    )
    assert view.trajectory.baseline is not None
    assert (view.trajectory.baseline.at, view.trajectory.baseline.total) == (
        complete.authored_at,
        15,
    )
    assert [row.marks for row in view.rows] == ["baseline", "", "nadir"]
