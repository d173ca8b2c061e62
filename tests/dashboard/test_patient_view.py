"""The patient page's plotted B0 is the alert rules' B0: the one a clinician recorded for the
course, else the one derived within the clinic's window, never a partially missing score (both
databases, through the running app's services)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.dashboard.patient_view import PatientPage, build_trajectory, load_patient_page
from backend.domain.alerts import store
from backend.domain.alerts.timeline import TreatmentSession
from backend.domain.responses.schemas import ScorePoint
from backend.domain.sessions.schemas import BaselineView
from backend.keyring.service import OwnerKeys
from questionnaires.registry import get_instrument
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock
from tests.sessions.courses import phq9_answer_list, plan_course, submit

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _point(days: float, total: int) -> ScorePoint:
    return ScorePoint(
        response_id=uuid.uuid4(),
        authored_at=T0 + timedelta(days=days),
        total=total,
        band=None,
        prorated=False,
        missing_items=(),
        instrument_version="1.0.0",
    )


def test_the_plot_marks_the_baseline_it_is_given() -> None:
    # A clinician's B0 need not be the latest score before the session: the plot marks it, not
    # one of its own choosing.
    recorded, later = _point(-5, 15), _point(-1, 18)
    baseline = BaselineView(
        instrument_id="qids-sr16",
        trajectory_key="qids-sr16-7d",
        source="recorded",
        response_id=recorded.response_id,
        instrument_version="1.0.0",
        total=15,
        authored_at=recorded.authored_at,
        recorded_at=T0,
        recorded_by=None,
    )
    points = (recorded, later, _point(1, 6))
    sessions = (TreatmentSession(id="s1", modality="n2o", start=T0),)
    view = build_trajectory(
        element_id="qids",
        instrument=get_instrument("qids-sr16"),
        points=points,
        sessions=sessions,
        alerts=(),
        baseline=baseline,
    )
    assert view.trajectory.baseline is not None
    assert (view.trajectory.baseline.at, view.trajectory.baseline.total) == (
        recorded.authored_at,
        15,
    )
    assert [row.marks for row in view.rows] == ["baseline", "", "nadir"]
    bare = build_trajectory(
        element_id="qids",
        instrument=get_instrument("qids-sr16"),
        points=points,
        sessions=sessions,
        alerts=(),
        baseline=None,
    )
    assert bare.trajectory.baseline is None
    assert [row.marks for row in bare.rows] == ["", "", "nadir"]


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


async def _page(
    api: AsyncTestClient[Litestar],  # noqa: F811
    patient_id: uuid.UUID,
    now: datetime,
) -> PatientPage:
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        return await load_patient_page(session, runtime.keyring, patient_id, alerts=(), now=now)


def _phq9_baseline(page: PatientPage) -> tuple[datetime, int] | None:
    (view,) = [t for t in page.trajectories if t.trajectory.element_id == "plot-phq9"]
    mark = view.trajectory.baseline
    return None if mark is None else (mark.at, mark.total)


async def test_the_page_shows_the_recorded_baseline_and_the_clinics_window(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician, admin = people.staff["clinician_a"].headers, people.staff["admin_a"].headers
    patient = people.patients["patient_a"]
    patient_id = uuid.UUID(str(patient.id))
    # The patient answers 10 days before the first session: outside the shipped 7-day window.
    early = clock.now() - timedelta(days=8)
    await submit(api, patient.headers, "phq9", phq9_answer_list(18), authored=early)
    course = await plan_course(api, clinician, patient.id, clock.now() + timedelta(days=2))
    assert _phq9_baseline(await _page(api, patient_id, clock.now())) is None

    # The clinic widens the window to 14 days: the rules now derive B0 from that answer, and
    # so does the page (it used the shipped parameters before).
    widened = await api.put(
        "/api/v1/clinic/alert-parameters",
        headers=admin,
        json={
            "parameterSet": "clinic-a",
            "version": "2",
            "rebound": {"defaults": {"baselineWithinDays": 14}},
        },
    )
    assert widened.status_code == 200, widened.text
    read = await api.get(f"{course}/baselines", headers=clinician)
    (derived,) = [b for b in read.json()["baselines"] if b["instrument_id"] == "phq9"]
    assert derived["source"] == "derived"
    shown = _phq9_baseline(await _page(api, patient_id, clock.now()))
    assert shown == (datetime.fromisoformat(derived["authored_at"]), 18)

    # A clinician records the intake form's PHQ-9 as B0: the page marks it, not the derived one.
    recorded = await api.put(
        f"{course}/baselines/phq9",
        headers=clinician,
        json={
            "answers": phq9_answer_list(21),
            "authored": (clock.now() - timedelta(days=1)).isoformat(),
        },
    )
    assert recorded.status_code == 200, recorded.text
    page = await _page(api, patient_id, clock.now())
    assert _phq9_baseline(page) == (datetime.fromisoformat(recorded.json()["authored_at"]), 21)
    (view,) = [t for t in page.trajectories if t.trajectory.element_id == "plot-phq9"]
    assert [(row.total, row.marks) for row in view.rows] == [(18, ""), (21, "baseline")]


async def test_the_page_reads_the_clinics_parameters_once_and_decrypts_each_score_once(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plots and the course's B0 come from one decryption of each score and one read of the
    clinic's parameters (the page's B0 is still the rules' B0: the test above)."""
    clinician = people.staff["clinician_a"].headers
    patient = people.patients["patient_a"]
    for days, total in ((3, 18), (2, 16)):
        authored = clock.now() - timedelta(days=days)
        await submit(api, patient.headers, "phq9", phq9_answer_list(total), authored=authored)
    await plan_course(api, clinician, patient.id, clock.now() + timedelta(days=2))

    overrides_read = 0
    latest_override = store.latest_override

    async def counted_override(*args: Any, **kwargs: Any) -> Any:
        nonlocal overrides_read
        overrides_read += 1
        return await latest_override(*args, **kwargs)

    decrypted: list[tuple[str, str]] = []
    decrypt = OwnerKeys.decrypt

    def counted_decrypt(
        self: OwnerKeys, *, table: str, column: str, row_id: str, blob: bytes
    ) -> bytes:
        decrypted.append((column, row_id))
        return decrypt(self, table=table, column=column, row_id=row_id, blob=blob)

    monkeypatch.setattr(store, "latest_override", counted_override)
    monkeypatch.setattr(OwnerKeys, "decrypt", counted_decrypt)
    page = await _page(api, uuid.UUID(str(patient.id)), clock.now())

    assert _phq9_baseline(page) is not None
    assert overrides_read == 1
    scores = [row_id for column, row_id in decrypted if column == "score_ct"]
    assert len(scores) == 2
    assert len(set(scores)) == len(scores)
