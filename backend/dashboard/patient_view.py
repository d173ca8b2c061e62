"""What the patient page shows, assembled from the services that own each part.

Scores come decrypted from ``responses.service`` (``score_series``, ``list_responses``); sessions
and check-ins are plain columns (``queries``); the baseline is the current course's B0 as the
alert rules read it (``sessions.baselines.baselines_of_scores``: recorded by a clinician, else
derived within the clinic's window, from the plotted scores, so each is decrypted once) so the
plot marks the value the rebound rule measures against, and N2O exposure is the rules'
``n2o_exposure`` with the clinic's limits (the clinic's parameters are read once, for both).
Pure assembly is kept apart from I/O (``build_trajectory``, ``exposure_summary``, ``ladder``) so
it can be tested without a database.
"""

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
from sqlalchemy import Row
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard import queries
from backend.dashboard.plots import Band, EventMark, ScoreMark, Trajectory, nadir_after
from backend.domain.alerts.clinic_settings import parameters_for_clinic
from backend.domain.alerts.sources import current_course
from backend.domain.alerts.timeline import ScoredResponse, TreatmentSession, n2o_exposure
from backend.domain.receipts.repository import of_check_ins as first_receipts
from backend.domain.responses import service as responses
from backend.domain.responses.schemas import ScorePoint
from backend.domain.sessions import service as sessions_service
from backend.domain.sessions.baselines import baselines_of_scores
from backend.domain.sessions.schemas import BaselineView
from backend.keyring.service import Keyring
from questionnaires.model import Instrument, NoTotal
from questionnaires.registry import catalogue

MODALITY_LABELS: Final = {"n2o": "N2O", "iv_ketamine": "IV ketamine", "esketamine": "Esketamine"}
# Checklists shown as a history table rather than a plot (no total score).
HISTORY_INSTRUMENTS: Final = ("side-effects", "n2o-neuro", "ketamine-bladder-misuse")


class PlotRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of a plot's table (its text alternative)."""

    at: datetime
    total: int
    band: str | None
    qualifier: str
    """" (prorated)", " (items missing)" or nothing: an incomplete total (§2.4)."""
    marks: str


class TrajectoryView(msgspec.Struct, frozen=True, kw_only=True):
    trajectory: Trajectory
    rows: list[PlotRow]


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    instrument: str
    reported: list[str]


class LadderStep(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    due_at: datetime
    status: str
    sent_at: datetime | None
    answered_at: datetime | None
    missed_at: datetime | None
    reminders_sent: int
    opened_at: datetime | None = None  # the app's first "opened" receipt (issue 8)


class Exposure(msgspec.Struct, frozen=True, kw_only=True):
    sessions: int
    total_minutes: int
    rolling_minutes: int
    rolling_days: int
    limit_hours: float
    hours_since_previous: float | None


def session_start(row: Row[Any]) -> datetime:
    started: datetime | None = row.started_at
    planned: datetime = row.planned_start_at
    return started if started is not None else planned


def timeline_sessions(rows: Sequence[Row[Any]]) -> tuple[TreatmentSession, ...]:
    return tuple(
        TreatmentSession(
            id=str(row.id),
            modality=row.modality,
            start=session_start(row),
            end=row.ended_at,
            n2o_concentration_percent=row.n2o_concentration_percent,
            n2o_minutes=row.n2o_minutes,
        )
        for row in rows
    )


class SessionLine(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the page's session table: the session, its status, and for a planned session
    whose start has passed, the times its "record as held" form starts from (its plan)."""

    session: TreatmentSession
    status: str
    held_form: tuple[datetime, datetime] | None = None


def session_lines(
    rows: Sequence[Row[Any]], sessions: Sequence[TreatmentSession], *, now: datetime
) -> list[SessionLine]:
    """`SessionLine`s, in the order of ``rows`` (``sessions`` are `timeline_sessions` of them)."""
    lines = []
    for row, timeline in zip(rows, sessions, strict=True):
        held_form = None
        if row.status == "planned" and row.planned_start_at <= now:
            held_form = (row.planned_start_at, min(row.planned_end_at, now))
        lines.append(SessionLine(session=timeline, status=row.status, held_form=held_form))
    return lines


def _band_label(instrument: Instrument, code: str | None) -> str | None:
    return next((b.label for b in instrument.bands if b.code == code), code)


def _mark(point: ScorePoint, total: int) -> ScoreMark:
    # A total with items missing is incomplete even when not prorated (domain maxima, §1.4).
    return ScoreMark(
        at=point.authored_at,
        total=total,
        prorated=point.prorated,
        partial=bool(point.missing_items),
    )


def scored_response(instrument_id: str, trajectory_key: str, point: ScorePoint) -> ScoredResponse:
    """A plotted score as the baseline rule reads it (`sessions.baselines.derive_baselines`)."""
    return ScoredResponse(
        id=str(point.response_id),
        instrument_id=instrument_id,
        instrument_version=point.instrument_version,
        trajectory_key=trajectory_key,
        recall_hours=None,
        authored=point.authored_at,
        total=point.total,
        prorated=point.prorated,
        partial=bool(point.missing_items),
    )


def build_trajectory(
    *,
    element_id: str,
    instrument: Instrument,
    points: Sequence[ScorePoint],
    sessions: tuple[TreatmentSession, ...],
    alerts: Sequence[EventMark],
    baseline: BaselineView | None,
) -> TrajectoryView:
    """A plot and its table for one trajectory: bands from the instrument, ``baseline`` (the
    course's B0 as the alert rules read it, `sessions.baselines`), the nadir after the first
    session."""
    marked = [(p, _mark(p, p.total)) for p in points if p.total is not None]
    scores = tuple(mark for _, mark in marked)
    b0 = None if baseline is None else ScoreMark(at=baseline.authored_at, total=baseline.total)
    first_session = min((s.start for s in sessions), default=None)
    nadir = nadir_after(scores, first_session)
    bands = tuple(Band(label=b.label, low=b.min, high=b.max) for b in instrument.bands)
    y_min = instrument.total_min if instrument.total_min is not None else 0
    y_max = instrument.total_max
    if y_max is None:
        y_max = max([b.high for b in bands] + [m.total for m in scores] + [1])
    trajectory = Trajectory(
        title=f"{instrument.title} ({instrument.recall.text}) over time",
        scores=scores,
        y_min=y_min,
        y_max=y_max,
        bands=bands,
        sessions=tuple(
            EventMark(at=s.start, label=f"{MODALITY_LABELS.get(s.modality, s.modality)} session")
            for s in sessions
        ),
        alerts=tuple(alerts),
        baseline=b0,
        nadir=nadir,
        element_id=element_id,
    )
    rows = []
    for point, mark in marked:
        marks = []
        if baseline is not None and point.response_id == baseline.response_id:
            marks.append("baseline")
        if nadir is not None and nadir.at == point.authored_at and nadir.total == point.total:
            marks.append("nadir")
        rows.append(
            PlotRow(
                at=point.authored_at,
                total=mark.total,
                band=_band_label(instrument, point.band),
                qualifier=mark.qualifier,
                marks=", ".join(marks),
            )
        )
    return TrajectoryView(trajectory=trajectory, rows=rows)


def exposure_summary(
    sessions: tuple[TreatmentSession, ...], *, rolling_days: int, limit_hours: float, now: datetime
) -> Exposure | None:
    """N2O exposure so far (sessions that have started), or None without N2O sessions."""
    done = tuple(s for s in sessions if s.modality == "n2o" and s.start <= now)
    if not done:
        return None
    summaries = n2o_exposure(done, rolling_days=rolling_days)
    window_start = now - timedelta(days=rolling_days)
    return Exposure(
        sessions=len(done),
        total_minutes=sum(s.n2o_exposure_minutes() for s in done),
        rolling_minutes=sum(s.n2o_exposure_minutes() for s in done if s.start > window_start),
        rolling_days=rolling_days,
        limit_hours=limit_hours,
        hours_since_previous=summaries[-1].hours_since_previous_session,
    )


def ladder(
    rows: Sequence[Row[Any]], opened: Mapping[str, datetime | None] | None = None
) -> list[LadderStep]:
    opened = opened or {}
    return [
        LadderStep(
            label=row.label,
            due_at=row.due_at,
            status=row.status,
            sent_at=row.sent_at,
            answered_at=row.answered_at,
            missed_at=row.missed_at,
            reminders_sent=row.reminders_sent,
            opened_at=opened.get(str(row.id)),
        )
        for row in rows
    ]


def reported_items(instrument: Instrument, answers: Sequence[Any]) -> list[str]:
    """Topics of the items answered with anything but "no"/0 (what the patient reported)."""
    reported = []
    for answer in answers:
        value = answer.value
        if value in (None, False, 0, "", "no"):
            continue
        item = instrument.item(answer.link_id)
        topic = item.topic if item is not None else answer.link_id
        if isinstance(value, bool):
            reported.append(topic)
        elif item is not None and item.options:
            option = next((o for o in item.options if o.value == value), None)
            reported.append(
                f"{topic}: {option.text if option is not None and option.text else value}"
            )
        else:
            reported.append(f"{topic}: {value}")
    return reported


class PatientPage(msgspec.Struct, frozen=True, kw_only=True):
    trajectories: list[TrajectoryView]
    history: list[HistoryEntry]
    ladder: list[LadderStep]
    exposure: Exposure | None
    session_lines: list[SessionLine]


async def load_patient_page(
    session: AsyncSession,
    keyring: Keyring,
    patient_id: uuid.UUID,
    *,
    alerts: Sequence[EventMark],
    now: datetime,
) -> PatientPage:
    """Everything on the patient page but the identity and alert panels (the caller audits)."""
    connection = await session.connection()
    session_rows = await queries.sessions_of_patient(connection, patient_id)
    sessions = timeline_sessions(session_rows)
    patient = await sessions_service.get_patient(session, patient_id)
    parameters = await parameters_for_clinic(session, patient.clinic_id)
    plotted: list[tuple[Instrument, str]] = []
    history: list[HistoryEntry] = []
    for row in await queries.trajectory_keys(connection, patient_id):
        instrument = catalogue().get(row.instrument_id, row.version)
        if instrument.id in HISTORY_INSTRUMENTS:
            page = await responses.list_responses(
                session,
                keyring,
                patient_id,
                cursor=None,
                limit=50,
                trajectory_key=row.trajectory_key,
            )
            history.extend(
                HistoryEntry(
                    at=record.authored_at,
                    instrument=instrument.title,
                    reported=reported_items(instrument, record.answers),
                )
                for record in page.items
            )
            continue
        if isinstance(instrument.scoring, NoTotal) or not instrument.bands:
            continue
        plotted.append((instrument, row.trajectory_key))
    # Each plotted trajectory's scores, decrypted once: for its plot and for its B0.
    series: dict[str, list[ScorePoint]] = {}
    for _, key in plotted:
        if key not in series:
            found = await responses.score_series(session, keyring, patient_id, key)
            series[key] = found.points
    # The course's B0 as the rules read them (recorded, else derived within the clinic's
    # window): the page shows what the alerts are measured against. Only plotted trajectories'
    # B0 are shown, and their scores are all in ``series``.
    baselines: dict[str, BaselineView] = {}
    course_ref = await current_course(connection, patient_id)
    if course_ref is not None:
        course = await sessions_service.get_course(session, patient_id, course_ref.id)
        instrument_ids = {key: instrument.id for instrument, key in plotted}
        scored = [
            scored_response(instrument_ids[key], key, point)
            for key, points in series.items()
            for point in points
        ]
        found_baselines = await baselines_of_scores(session, course, parameters, scored)
        baselines = {b.trajectory_key: b for b in found_baselines.baselines}
    trajectories = [
        build_trajectory(
            element_id=f"plot-{instrument.id}",
            instrument=instrument,
            points=series[key],
            sessions=sessions,
            alerts=alerts,
            baseline=baselines.get(key),
        )
        for instrument, key in plotted
    ]
    history.sort(key=lambda entry: entry.at, reverse=True)
    neuro = parameters.n2o_neuro
    check_ins = await queries.check_ins_of_patient(connection, patient_id)
    receipts = await first_receipts(connection, (row.id for row in check_ins))
    return PatientPage(
        trajectories=trajectories,
        history=history,
        ladder=ladder(check_ins, {k: r.opened_at for k, r in receipts.items()}),
        exposure=exposure_summary(
            sessions,
            rolling_days=neuro.exposure_rolling_days,
            limit_hours=neuro.exposure_limit_hours,
            now=now,
        ),
        session_lines=session_lines(session_rows, sessions, now=now),
    )
