"""Running the rules for one patient and acting once on each new trigger (DESIGN §7).

A submission plans before it stores its response (`plan_evaluation`: reads only) and acts in the
transaction that stores it (`act_on_plan`), so a positive suicide item and its alert commit
together or not at all. The timers evaluate too, for rules that fire with the passing of time
(`evaluate_recent_patients`: re-ask deadlines, missed check-ins, N2O exposure, dissociation
review times).

The engine is stateless and reports every past trigger again, so only occurrence keys never seen
before are acted on; the unique key makes that exactly-once also when two instances evaluate the
same patient at once. For each new trigger:
- the occurrence is stored with its evidence encrypted under the patient's data key;
- a clinician trigger opens an alert, or attaches to the patient's unresolved alert with the
  same dedup key (one per patient and kind; suicidality has one per submission, §5.3 rule 6);
- a new alert, or new evidence that raises an alert's severity, is sent to the first responders;
  an acknowledged alert whose severity rises is opened again, with a fresh service level;
- a trigger that holds the next N2O session sets the patient's hold (§5.1);
- a patient-facing action goes back to the caller (the submission's response shows it); a
  missed check-in reminder is also pushed to the patient's devices through the outbox.
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple, Protocol

import msgspec
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import store
from backend.domain.alerts.auditing import audit_alert_event
from backend.domain.alerts.candidate import (
    SEVERITY_RANK,
    AlertCandidate,
    AlertKind,
    PatientAction,
)
from backend.domain.alerts.clinic_settings import parameters_for_clinic
from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.history import NOT_READ, NotRead, SubmittedResponse, patient_timeline
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.reminders import push_check_in_reminder
from backend.domain.alerts.routing import first_responders, notify_staff
from backend.domain.alerts.sources import (
    CourseParts,
    CourseRef,
    PriorResponses,
    recently_active_patients,
)
from backend.keyring.service import Keyring, OwnerKeys
from backend.lib.ids import uuid7
from backend.system.metrics import count_alert
from notifications.templates import MessageKind

logger = logging.getLogger("interlude.alerts")

OCCURRENCES_TABLE: Final = "alert_occurrences"
RECENT_ACTIVITY: Final = timedelta(days=35)
"""How far back activity keeps a patient under time-driven evaluation: the longest time rule
(a missed check-in's 48 h flag) is far shorter, but a course's check-ins and planned sessions
reach weeks ahead, and they count by their own dates."""
_TIMER_BATCH: Final = 200


class PatientRouting(Protocol):
    """What evaluation needs of the patient's row (a Core row or a caller's own record)."""

    @property
    def clinic_id(self) -> uuid.UUID: ...
    @property
    def care_team_id(self) -> uuid.UUID | None: ...
    @property
    def status(self) -> str: ...


class PatientNotice(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Something the patient's app must show now, from a trigger seen for the first time."""

    action: PatientAction
    kind: AlertKind
    alert_id: uuid.UUID | None = None


def _encode_evidence(candidate: AlertCandidate) -> bytes:
    return msgspec.msgpack.encode(candidate.evidence)


def _sla_due(candidate: AlertCandidate, now: datetime) -> datetime | None:
    if candidate.sla_minutes is None:
        return None
    return now + timedelta(minutes=candidate.sla_minutes)


async def _open_or_attach(
    session: AsyncSession,
    connection: AsyncConnection,
    candidate: AlertCandidate,
    routing: PatientRouting,
    occurrence_id: uuid.UUID,
    *,
    patient_id: uuid.UUID,
    now: datetime,
) -> uuid.UUID:
    clinic_id: uuid.UUID = routing.clinic_id
    rank = SEVERITY_RANK[candidate.severity]
    sla_due = _sla_due(candidate, now)
    alert_id = uuid7()
    opened = await store.insert_alert_unless_unresolved(
        connection,
        {
            "id": alert_id,
            "clinic_id": clinic_id,
            "patient_id": patient_id,
            "care_team_id": routing.care_team_id,
            "kind": candidate.kind,
            "severity": candidate.severity,
            "severity_rank": rank,
            "status": "open",
            "dedup_key": candidate.dedup_key,
            "rule_id": candidate.rule_id,
            "parameter_version": candidate.parameter_version,
            "occurrence_count": 1,
            "first_triggered_at": candidate.triggered_at,
            "last_triggered_at": candidate.triggered_at,
            "opened_at": now,
            "sla_minutes": candidate.sla_minutes,
            "sla_due_at": sla_due,
            "escalation_level": 0,
            "next_escalation_at": sla_due,
            "updated_at": now,
        },
    )
    notify_reason: str | None = "open"
    action = "alert.open"
    if not opened:
        existing = await store.unresolved_alert(connection, patient_id, candidate.dedup_key)
        if existing is None:  # pragma: no cover - the conflicting row is in this transaction
            raise RuntimeError("an unresolved alert vanished during evaluation")
        alert_id = existing.id
        changes: dict[str, Any] = {
            "occurrence_count": existing.occurrence_count + 1,
            "last_triggered_at": max(existing.last_triggered_at, candidate.triggered_at),
            "updated_at": now,
        }
        notify_reason = None
        action = "alert.evidence_added"
        if rank > existing.severity_rank:
            # Worse news is news: it goes out again, and an acknowledged alert needs a new look.
            changes.update(
                severity=candidate.severity,
                severity_rank=rank,
                rule_id=candidate.rule_id,
                parameter_version=candidate.parameter_version,
                sla_minutes=candidate.sla_minutes,
                sla_due_at=sla_due,
                next_escalation_at=sla_due,
                escalation_level=0,
                status="open",
            )
            notify_reason = f"occ:{occurrence_id}"
            action = "alert.severity_raised"
        await store.update_alert(connection, alert_id, **changes)
    await store.link_occurrence(connection, occurrence_id, alert_id)
    if notify_reason is not None and candidate.sla_minutes is not None:
        # Severity "info" (no service level) is for the dashboard only (§2.4 REBOUND_CANDIDATE).
        recipients = await first_responders(
            connection, clinic_id, routing.care_team_id, candidate.severity
        )
        await notify_staff(
            session,
            kind=MessageKind.ALERT,
            alert_id=alert_id,
            clinic_id=clinic_id,
            severity=candidate.severity,
            staff_ids=recipients,
            reason=notify_reason,
            now=now,
        )
    await audit_alert_event(
        session,
        actor=None,
        action=action,
        resource_type="alert",
        resource_id=alert_id,
        clinic_id=clinic_id,
        at=now,
    )
    if opened:
        _count_after_commit(session, [candidate])
    return alert_id


def _count_after_commit(session: AsyncSession, opened: list[AlertCandidate]) -> None:
    """Count opened alerts in /metrics once their transaction commits (never if it rolls back)."""

    def count(_session: object) -> None:
        for candidate in opened:
            count_alert(candidate.kind, candidate.severity)

    event.listen(session.sync_session, "after_commit", count, once=True)


async def _hold(
    session: AsyncSession,
    connection: AsyncConnection,
    *,
    patient_id: uuid.UUID,
    clinic_id: uuid.UUID,
    alert_id: uuid.UUID,
    now: datetime,
) -> None:
    hold_id = uuid7()
    if await store.insert_hold_unless_active(
        connection,
        {
            "id": hold_id,
            "clinic_id": clinic_id,
            "patient_id": patient_id,
            "alert_id": alert_id,
            "created_at": now,
        },
    ):
        await audit_alert_event(
            session,
            actor=None,
            action="n2o_hold.set",
            resource_type="n2o_session_hold",
            resource_id=hold_id,
            clinic_id=clinic_id,
            at=now,
        )


async def _store_occurrence(
    connection: AsyncConnection,
    keys: OwnerKeys,
    candidate: AlertCandidate,
    *,
    patient_id: uuid.UUID,
    clinic_id: uuid.UUID,
    now: datetime,
) -> uuid.UUID | None:
    occurrence_id = uuid7()
    stored = await store.insert_occurrence_unless_seen(
        connection,
        {
            "id": occurrence_id,
            "clinic_id": clinic_id,
            "patient_id": patient_id,
            "occurrence_key": candidate.occurrence_key,
            "kind": candidate.kind,
            "severity": candidate.severity,
            "audience": candidate.audience,
            "rule_id": candidate.rule_id,
            "parameter_version": candidate.parameter_version,
            "patient_action": candidate.patient_action,
            "triggered_at": candidate.triggered_at,
            "recorded_at": now,
            "evidence_ct": keys.encrypt(
                table=OCCURRENCES_TABLE,
                column="evidence_ct",
                row_id=str(occurrence_id),
                plaintext=_encode_evidence(candidate),
            ),
        },
    )
    return occurrence_id if stored else None


class EvaluationPlan(NamedTuple):
    """What evaluating a patient found, before anything is stored (`plan_evaluation`)."""

    routing: PatientRouting
    keys: OwnerKeys | None
    new: list[AlertCandidate]
    """Triggers never seen before, oldest first (an alert's first occurrence is its earliest
    evidence); empty when monitoring has stopped."""


async def plan_evaluation(
    session: AsyncSession,
    keyring: Keyring,
    *,
    patient_id: uuid.UUID,
    clinic_id: uuid.UUID,
    now: datetime,
    routing: PatientRouting | None = None,
    keys: OwnerKeys | None = None,
    submitted: SubmittedResponse | None = None,
    parameters: AlertParameters | None = None,
    course: CourseRef | NotRead | None = NOT_READ,
    parts: CourseParts | NotRead | None = NOT_READ,
    prior: PriorResponses | None = None,
) -> EvaluationPlan:
    """Evaluate every rule for the patient as of ``now``; reads only. `act_on_plan` then stores
    the new triggers and acts on them, in the transaction that must hold them.

    ``routing``, ``keys``, ``parameters``, ``course``, ``parts`` and ``prior``: the patient's
    row and keys, the clinic's alert parameters, the current course and its parts, the latest
    answers around the submission, if the caller (a submission) already read them; read here
    otherwise. ``submitted``: the response a submission is storing, whose triggers are wanted
    now (`history.patient_timeline`).
    """
    connection = await session.connection()
    if routing is None:
        routing = await store.patient_routing(connection, patient_id)
    if routing is None or routing.clinic_id != clinic_id:
        raise LookupError("no such patient in this clinic")
    if routing.status != "active":
        # Withdrawn or erased: monitoring has stopped, and erased data cannot be read.
        return EvaluationPlan(routing=routing, keys=keys, new=[])
    if parameters is None:
        parameters = await parameters_for_clinic(session, clinic_id)
    timeline = await patient_timeline(
        session,
        keyring,
        patient_id,
        parameters,
        now=now,
        keys=keys,
        submitted=submitted,
        course=course,
        parts=parts,
        prior=prior,
    )
    # A phone's clock may run up to a few minutes ahead (responses.service.MAX_CLOCK_SKEW); the
    # engine ignores data authored after `now`, and a suicide item must never wait for the clock.
    as_of = max([now, *(r.authored for r in timeline.responses)])
    candidates = evaluate_alerts(timeline, parameters, now=as_of)
    seen = await store.seen_occurrence_keys(
        connection, patient_id, [c.occurrence_key for c in candidates]
    )
    new = sorted(
        (c for c in candidates if c.occurrence_key not in seen),
        key=lambda c: (c.triggered_at, c.occurrence_key),
    )
    return EvaluationPlan(routing=routing, keys=keys, new=new)


async def act_on_plan(
    session: AsyncSession,
    keyring: Keyring,
    plan: EvaluationPlan,
    *,
    patient_id: uuid.UUID,
    clinic_id: uuid.UUID,
    now: datetime,
) -> list[PatientNotice]:
    """Store each new trigger of ``plan`` once and act on it (module doc), in the caller's
    transaction. Returns what the patient's app must show now, most urgent first as the engine
    ordered them."""
    if not plan.new:
        return []
    connection = await session.connection()
    keys = plan.keys
    if keys is None or keys.active_version is None:
        keys = await keyring.owner_keys(session, patient_id, active_only=True)
    notices: list[PatientNotice] = []
    for candidate in plan.new:
        occurrence_id = await _store_occurrence(
            connection, keys, candidate, patient_id=patient_id, clinic_id=clinic_id, now=now
        )
        if occurrence_id is None:
            continue  # another transaction stored this trigger first and acts on it
        alert_id = None
        if candidate.audience == "clinician":
            alert_id = await _open_or_attach(
                session,
                connection,
                candidate,
                plan.routing,
                occurrence_id,
                patient_id=patient_id,
                now=now,
            )
            if candidate.hold_next_n2o_session:
                await _hold(
                    session,
                    connection,
                    patient_id=patient_id,
                    clinic_id=clinic_id,
                    alert_id=alert_id,
                    now=now,
                )
        else:
            await push_check_in_reminder(session, candidate, clinic_id=clinic_id, now=now)
        if candidate.patient_action is not None:
            notices.append(
                PatientNotice(
                    action=candidate.patient_action, kind=candidate.kind, alert_id=alert_id
                )
            )
    return notices


async def evaluate_patient(
    session: AsyncSession,
    keyring: Keyring,
    *,
    patient_id: uuid.UUID,
    clinic_id: uuid.UUID,
    now: datetime,
    routing: PatientRouting | None = None,
    keys: OwnerKeys | None = None,
    parameters: AlertParameters | None = None,
) -> list[PatientNotice]:
    """Evaluate every rule for the patient as of ``now`` and act on triggers not seen before, in
    the caller's transaction (`plan_evaluation`, then `act_on_plan`)."""
    plan = await plan_evaluation(
        session,
        keyring,
        patient_id=patient_id,
        clinic_id=clinic_id,
        now=now,
        routing=routing,
        keys=keys,
        parameters=parameters,
    )
    return await act_on_plan(
        session, keyring, plan, patient_id=patient_id, clinic_id=clinic_id, now=now
    )


async def evaluate_recent_patients(
    sessionmaker: async_sessionmaker[AsyncSession], keyring: Keyring, *, now: datetime
) -> int:
    """The timer's pass: every patient with recent activity, one transaction each (a failure for
    one patient is logged and does not stop the others). Returns how many were evaluated."""
    evaluated = 0
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session:
            connection = await session.connection()
            batch = await recently_active_patients(
                connection, now - RECENT_ACTIVITY, after=after, limit=_TIMER_BATCH
            )
        for row in batch:
            try:
                async with sessionmaker() as session:
                    await evaluate_patient(
                        session,
                        keyring,
                        patient_id=row.patient_id,
                        clinic_id=row.clinic_id,
                        now=now,
                    )
                    await session.commit()
                evaluated += 1
            except Exception:
                logger.exception(
                    "alert evaluation failed for a patient",
                    extra={"fields": {"patient": str(row.patient_id)}},
                )
        if len(batch) < _TIMER_BATCH:
            return evaluated
        after = batch[-1].patient_id
