"""What the planner reads (a session, a patient's scheduling context) and writes (check-in plans).

Plain msgspec Structs with UTC datetimes and str ids, so the repository can persist them as they
are. A plan keeps two layers: what the protocol asked (`planned_*`, `nominal_due_at`) and what
quiet hours and merging made of it (`instruments`, `opens_at`/`closes_at`, `due_at`). Storing the
first layer is what lets a later re-plan undo a merge when the other session moves or is cancelled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from backend.domain.check_ins.protocols import Modality, Priority
from backend.domain.check_ins.quiet_hours import QuietHours, place_in_window, place_reminder

CheckInStatus = Literal[
    "pending", "merged", "cancelled", "claimed", "sent", "answered", "missed", "failed"
]
"""pending: waits for its due time. merged: folded into another check-in (`merged_into`), never
sent itself. cancelled: its session was cancelled or the step no longer applies. claimed → sent →
answered, or missed when the window closed unanswered, or failed after delivery attempts."""

REPLANNABLE: frozenset[CheckInStatus] = frozenset({"pending", "merged", "cancelled"})
"""Nothing has reached the patient yet: a re-plan may change these rows."""
ISSUED: frozenset[CheckInStatus] = frozenset({"claimed", "sent", "answered"})
"""The patient has (or is being sent) these instruments: planning never asks them again for an
overlapping window. Missed and failed ones do not count: the patient never answered."""


class PlanningError(ValueError):
    """The inputs contradict each other (naive datetimes, a session of another modality...)."""


class PatientSchedulingContext(msgspec.Struct, frozen=True, kw_only=True):
    patient_id: str
    time_zone: str
    """IANA name (DESIGN §3); a change re-plans every check-in not yet sent."""
    quiet_hours: QuietHours = QuietHours()
    last_answered_at: dict[str, datetime] = msgspec.field(default_factory=dict)
    """Instrument id → when the patient last answered it (for protocol substitutions)."""

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise PlanningError(f"unknown time zone {self.time_zone!r}") from exc


class PlannedSession(msgspec.Struct, frozen=True, kw_only=True):
    """A treatment session as the planner needs it; the course facts come from the service."""

    id: str
    course_id: str
    patient_id: str
    modality: Modality
    starts_at: datetime
    ends_at: datetime
    course_started_at: datetime
    """Start of the course's first session: course weeks and monthly steps count from it."""
    is_first_in_course: bool
    is_last_in_course: bool = False
    next_session_starts_at: datetime | None = None
    cancelled: bool = False


class CheckInPlan(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    """Idempotency key: session id + protocol step (+ occurrence); the same on every re-plan."""
    patient_id: str
    course_id: str
    session_id: str
    protocol_id: str
    protocol_version: str
    step: str
    label: str
    planned_priority: Priority
    planned_instruments: tuple[str, ...]
    planned_opens_at: datetime
    planned_closes_at: datetime
    nominal_due_at: datetime
    """Anchor + offset, before quiet hours."""
    reminder_delays: tuple[timedelta, ...]
    missed_flag_after: timedelta
    priority: Priority
    """The highest planned priority of the check-ins merged into this one."""
    instruments: tuple[str, ...]
    """What the patient is asked; empty when merged into another check-in."""
    opens_at: datetime
    closes_at: datetime
    """The check-in expires (is marked missed) when its window closes; never sent late."""
    due_at: datetime
    during_quiet_hours: bool
    """Due inside quiet hours because the whole window is quiet: deliver silently."""
    reminders_at: tuple[datetime, ...]
    missed_flag_at: datetime
    """When the alert engine raises the clinician "missed check-in" flag if unanswered."""
    merged_into: str | None = None
    absorbed: tuple[str, ...] = ()
    """Keys of the check-ins merged into this one."""

    @property
    def expires_at(self) -> datetime:
        return self.closes_at

    @property
    def status(self) -> CheckInStatus:
        """The status a new or re-planned row takes."""
        return "pending" if self.merged_into is None else "merged"


class ExistingCheckIn(msgspec.Struct, frozen=True, kw_only=True):
    plan: CheckInPlan
    status: CheckInStatus


def settle(
    plan: CheckInPlan,
    *,
    instruments: tuple[str, ...],
    opens_at: datetime,
    closes_at: datetime,
    nominal: datetime,
    patient: PatientSchedulingContext,
    priority: Priority | None = None,
    absorbed: tuple[str, ...] = (),
) -> CheckInPlan:
    """The plan asking `instruments` in [opens_at, closes_at), placed around quiet hours."""
    zone = patient.zone()
    placement = place_in_window(nominal, opens_at, closes_at, zone, patient.quiet_hours)
    reminders = (
        place_reminder(placement.at + delay, placement.at, closes_at, zone, patient.quiet_hours)
        for delay in plan.reminder_delays
    )
    return msgspec.structs.replace(
        plan,
        instruments=instruments,
        opens_at=opens_at,
        closes_at=closes_at,
        due_at=placement.at,
        during_quiet_hours=placement.during_quiet_hours,
        reminders_at=tuple(sorted({r for r in reminders if r is not None})),
        missed_flag_at=placement.at + plan.missed_flag_after,
        priority=priority or plan.planned_priority,
        merged_into=None,
        absorbed=absorbed,
    )


def merged(plan: CheckInPlan, into: str, patient: PatientSchedulingContext) -> CheckInPlan:
    """A plan folded into check-in `into`: it asks nothing and is never sent."""
    alone = settle(
        plan,
        instruments=(),
        opens_at=plan.planned_opens_at,
        closes_at=plan.planned_closes_at,
        nominal=plan.nominal_due_at,
        patient=patient,
    )
    return msgspec.structs.replace(alone, reminders_at=(), merged_into=into)
