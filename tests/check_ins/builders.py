"""Small builders for check-in planning tests."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from backend.domain.check_ins.plans import (
    CheckInPlan,
    CheckInStatus,
    ExistingCheckIn,
    PatientSchedulingContext,
    PlannedSession,
)
from backend.domain.check_ins.protocols import Modality
from backend.domain.check_ins.quiet_hours import QuietHours

PARIS = ZoneInfo("Europe/Paris")


def local(zone: ZoneInfo, *args: int) -> datetime:
    """An aware local wall-clock time, e.g. local(PARIS, 2025, 6, 3, 14, 0)."""
    return datetime(*args, tzinfo=zone)  # type: ignore[arg-type,misc]


def session(
    *,
    id: str = "s1",
    ends_at: datetime,
    minutes: int = 60,
    modality: Modality = "n2o",
    course_started_at: datetime | None = None,
    first: bool = False,
    last: bool = False,
    next_starts_at: datetime | None = None,
    cancelled: bool = False,
) -> PlannedSession:
    starts_at = ends_at - timedelta(minutes=minutes)
    return PlannedSession(
        id=id,
        course_id="c1",
        patient_id="p1",
        modality=modality,
        starts_at=starts_at.astimezone(UTC),
        ends_at=ends_at.astimezone(UTC),
        course_started_at=(course_started_at or starts_at).astimezone(UTC),
        is_first_in_course=first,
        is_last_in_course=last,
        next_session_starts_at=next_starts_at,
        cancelled=cancelled,
    )


def patient(
    zone: str = "Europe/Paris",
    quiet: tuple[time, time] = (time(21), time(8)),
    last_answered_at: dict[str, datetime] | None = None,
) -> PatientSchedulingContext:
    return PatientSchedulingContext(
        patient_id="p1",
        time_zone=zone,
        quiet_hours=QuietHours(start=quiet[0], end=quiet[1]),
        last_answered_at=last_answered_at or {},
    )


def rows(
    plans: list[CheckInPlan], statuses: dict[str, CheckInStatus] | None = None
) -> list[ExistingCheckIn]:
    """Existing rows for plans, as the repository stores them; `statuses` overrides by key."""
    chosen = statuses or {}
    return [ExistingCheckIn(plan=p, status=chosen.get(p.key, p.status)) for p in plans]


def by_step(plans: list[CheckInPlan]) -> dict[str, CheckInPlan]:
    return {p.step: p for p in plans}
