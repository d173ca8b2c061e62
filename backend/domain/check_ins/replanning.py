"""Re-planning a patient's check-ins when a session is recorded, moved or cancelled, or when the
patient's time zone or quiet hours change.

The decision is computed from the patient's whole set of check-ins, so merging across sessions
(`merging.py`) is redone and a merge is undone when its partner session moves away. Rows that
reached the patient (claimed, sent, answered) or closed (missed, failed) are never changed and
their keys are never re-issued (STYLE: schedules regenerated on every edit re-send what patients
already answered). The result depends only on the final state, so applying the same re-plan
twice changes nothing the second time.

`replan` takes `now` when the service knows it: a check-in whose window closed before it was
ever planned (a session entered after it was held, a course ended weeks after its last session)
is not planned at all: it could never be sent, so it must not come back as the patient's miss.
Rows already planned are left to the timers, which mark them missed when their window closes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from backend.domain.check_ins.merging import merge_check_ins
from backend.domain.check_ins.planning import protocol_check_ins
from backend.domain.check_ins.plans import (
    REPLANNABLE,
    CheckInPlan,
    ExistingCheckIn,
    PatientSchedulingContext,
    PlannedSession,
    PlanningError,
)
from backend.domain.check_ins.protocols import Protocol


class ReplanDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What the repository writes, in one transaction with the session change.

    insert: new rows (status from `plan.status`: pending, or merged); update: existing not-yet-sent
    rows, to be overwritten with these values and status `plan.status`; cancel: keys of
    not-yet-sent rows to mark cancelled."""

    insert: tuple[CheckInPlan, ...] = ()
    update: tuple[CheckInPlan, ...] = ()
    cancel: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.insert or self.update or self.cancel)


def replan(
    existing: Sequence[ExistingCheckIn],
    session: PlannedSession,
    protocol: Protocol,
    patient: PatientSchedulingContext,
    *,
    now: datetime | None = None,
) -> ReplanDecision:
    """The changes that bring the patient's check-ins in line with `session` (new, moved or
    cancelled). `existing` is every check-in of the patient, of every session and status; with
    `now`, check-ins not yet planned whose window has closed are left out (module docstring)."""
    own = [e for e in existing if e.plan.session_id == session.id]
    others = [e for e in existing if e.plan.session_id != session.id]
    targets = protocol_check_ins(session, protocol, patient)
    if now is not None:
        live = {e.plan.key for e in existing if e.status != "cancelled"}
        targets = [t for t in targets if t.key in live or t.planned_closes_at > now]
    return _decide(existing, [e for e in others if e.status != "cancelled"], targets, own, patient)


def replan_for_patient(
    existing: Sequence[ExistingCheckIn], patient: PatientSchedulingContext
) -> ReplanDecision:
    """Re-place every not-yet-sent check-in after the patient's time zone or quiet hours
    changed (the nominal times are UTC offsets from the session and do not move)."""
    return _decide(existing, [e for e in existing if e.status != "cancelled"], [], [], patient)


def apply_decision(
    existing: Iterable[ExistingCheckIn], decision: ReplanDecision
) -> list[ExistingCheckIn]:
    """The rows after the decision, as the repository would leave them (ordered by key)."""
    rows = {e.plan.key: e for e in existing}
    for plan in (*decision.insert, *decision.update):
        rows[plan.key] = ExistingCheckIn(plan=plan, status=plan.status)
    for key in decision.cancel:
        rows[key] = msgspec.structs.replace(rows[key], status="cancelled")
    return [rows[key] for key in sorted(rows)]


def _decide(
    existing: Sequence[ExistingCheckIn],
    other_rows: Sequence[ExistingCheckIn],
    targets: list[CheckInPlan],
    own: Sequence[ExistingCheckIn],
    patient: PatientSchedulingContext,
) -> ReplanDecision:
    by_key = {e.plan.key: e for e in existing}
    if len(by_key) != len(existing):
        raise PlanningError("two existing check-ins share an idempotency key")
    if any(e.plan.patient_id != patient.patient_id for e in existing):
        raise PlanningError("an existing check-in belongs to another patient")
    fresh = [t for t in targets if t.key not in by_key or by_key[t.key].status in REPLANNABLE]
    candidates = fresh + [e.plan for e in other_rows if e.status in REPLANNABLE]
    outcome = merge_check_ins(candidates, existing, patient)
    insert, update = [], []
    for plan in outcome:
        current = by_key.get(plan.key)
        if current is None:
            insert.append(plan)
        elif current.plan != plan or current.status != plan.status:
            update.append(plan)
    planned = {p.key for p in outcome}
    cancel = sorted(
        e.plan.key
        for e in own
        if e.plan.key not in planned and e.status in REPLANNABLE and e.status != "cancelled"
    )
    return ReplanDecision(insert=tuple(insert), update=tuple(update), cancel=tuple(cancel))
