"""What clinicians do with alerts: list, read (evidence decrypted), acknowledge, resolve.

open → acknowledged → resolved; resolving an open alert acknowledges it in the same step.
Acknowledging stops escalation; resolving needs a coded outcome and a note, both encrypted under
the patient's data key. Every read and change is audited. Alerts are found within the caller's
clinic only: another clinic's alert is "not found", never "forbidden" (no existence oracle).
"""

import base64
import uuid
from datetime import datetime
from typing import Any, Final

import msgspec
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import store
from backend.domain.alerts.auditing import audit_alert_event
from backend.domain.alerts.candidate import SEVERITY_RANK, Evidence, Severity
from backend.domain.alerts.evaluation import OCCURRENCES_TABLE
from backend.domain.alerts.holds import n2o_hold_for
from backend.domain.alerts.rows import AnyRow
from backend.domain.alerts.schemas import (
    AlertDetail,
    AlertPage,
    AlertStatus,
    AlertSummary,
    OccurrenceView,
    Resolution,
    ResolveRequest,
)
from backend.identity.principal import Principal
from backend.keyring.service import Keyring
from backend.lib.errors import Conflict, InvalidInput, NotFound

ALERTS_TABLE: Final = "alerts"
UNRESOLVED: Final[tuple[AlertStatus, ...]] = ("open", "acknowledged")
_NOT_FOUND: Final = "no such alert in your clinic"


def _clinic(principal: Principal) -> uuid.UUID:
    if principal.clinic_id is None:  # pragma: no cover - the access rule requires a clinic
        raise NotFound(_NOT_FOUND)
    return principal.clinic_id


def _summary(row: AnyRow) -> AlertSummary:
    return AlertSummary(
        id=row.id,
        patient_id=row.patient_id,
        care_team_id=row.care_team_id,
        kind=row.kind,
        severity=row.severity,
        status=row.status,
        rule_id=row.rule_id,
        parameter_version=row.parameter_version,
        occurrence_count=row.occurrence_count,
        first_triggered_at=row.first_triggered_at,
        last_triggered_at=row.last_triggered_at,
        opened_at=row.opened_at,
        sla_due_at=row.sla_due_at,
        escalation_level=row.escalation_level,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
    )


_CURSOR = tuple[int, str, str]


def _cursor(row: AnyRow) -> str:
    raw = msgspec.msgpack.encode((row.severity_rank, row.opened_at.isoformat(), str(row.id)))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[int, datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        rank, opened, alert_id = msgspec.msgpack.decode(
            base64.urlsafe_b64decode(padded), type=_CURSOR
        )
        parsed = datetime.fromisoformat(opened)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return rank, parsed, uuid.UUID(alert_id)
    except (ValueError, msgspec.DecodeError):
        raise InvalidInput("cursor is not one this service issued") from None


async def list_alerts(
    session: AsyncSession,
    principal: Principal,
    *,
    statuses: tuple[AlertStatus, ...],
    severities: tuple[Severity, ...],
    patient_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
    now: datetime,
) -> AlertPage:
    clinic_id = _clinic(principal)
    unknown = [s for s in severities if s not in SEVERITY_RANK]
    if unknown:  # pragma: no cover - the route's type already refuses these
        raise InvalidInput("unknown severity")
    connection = await session.connection()
    rows = await store.page_of_alerts(
        connection,
        clinic_id,
        statuses=statuses,
        severities=severities or None,
        patient_id=patient_id,
        after=_parse_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    await audit_alert_event(
        session,
        actor=principal,
        action="alert.list",
        resource_type="alerts" if patient_id is None else "patient_alerts",
        resource_id=patient_id,
        clinic_id=clinic_id,
        at=now,
    )
    return AlertPage(
        items=[_summary(row) for row in rows[:limit]],
        next_cursor=_cursor(rows[limit - 1]) if len(rows) > limit else None,
    )


async def get_alert(
    session: AsyncSession,
    keyring: Keyring,
    principal: Principal,
    alert_id: uuid.UUID,
    *,
    now: datetime,
) -> AlertDetail:
    clinic_id = _clinic(principal)
    connection = await session.connection()
    row = await store.alert_in_clinic(connection, clinic_id, alert_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    occurrences = await store.occurrences_of(connection, alert_id)
    keys = await keyring.owner_keys(session, row.patient_id)
    views = [
        OccurrenceView(
            id=o.id,
            kind=o.kind,
            severity=o.severity,
            rule_id=o.rule_id,
            parameter_version=o.parameter_version,
            triggered_at=o.triggered_at,
            recorded_at=o.recorded_at,
            patient_action=o.patient_action,
            evidence=msgspec.msgpack.decode(
                keys.decrypt(
                    table=OCCURRENCES_TABLE,
                    column="evidence_ct",
                    row_id=str(o.id),
                    blob=bytes(o.evidence_ct),
                ),
                type=Evidence,
            ),
        )
        for o in occurrences
    ]
    resolution = None
    if row.resolution_ct is not None:
        resolution = msgspec.msgpack.decode(
            keys.decrypt(
                table=ALERTS_TABLE,
                column="resolution_ct",
                row_id=str(row.id),
                blob=bytes(row.resolution_ct),
            ),
            type=Resolution,
        )
    hold = await n2o_hold_for(session, row.patient_id)
    await audit_alert_event(
        session,
        actor=principal,
        action="alert.read",
        resource_type="alert",
        resource_id=alert_id,
        clinic_id=clinic_id,
        at=now,
    )
    return AlertDetail(
        alert=_summary(row),
        occurrences=views,
        resolution=resolution,
        n2o_hold=hold if hold is not None and hold.alert_id == alert_id else None,
    )


async def acknowledge(
    session: AsyncSession, principal: Principal, alert_id: uuid.UUID, *, now: datetime
) -> AlertSummary:
    """Acknowledge an open alert (stops escalation). Acknowledging again changes nothing;
    a resolved alert is a conflict."""
    clinic_id = _clinic(principal)
    connection = await session.connection()
    row = await store.alert_in_clinic(connection, clinic_id, alert_id, lock=True)
    if row is None:
        raise NotFound(_NOT_FOUND)
    if row.status == "resolved":
        raise Conflict("this alert is resolved already")
    if row.status == "open":
        changed = await store.update_alert_if_status(
            connection,
            alert_id,
            ("open",),
            status="acknowledged",
            acknowledged_at=now,
            acknowledged_by=principal.subject_id,
            next_escalation_at=None,
            updated_at=now,
        )
        if not changed:  # pragma: no cover - SQLite serialises writers; PostgreSQL locked the row
            raise Conflict("this alert changed meanwhile; reload it")
        await audit_alert_event(
            session,
            actor=principal,
            action="alert.acknowledge",
            resource_type="alert",
            resource_id=alert_id,
            clinic_id=clinic_id,
            at=now,
        )
    updated = await store.alert_in_clinic(connection, clinic_id, alert_id)
    assert updated is not None
    return _summary(updated)


async def resolve(
    session: AsyncSession,
    keyring: Keyring,
    principal: Principal,
    alert_id: uuid.UUID,
    request: ResolveRequest,
    *,
    now: datetime,
) -> AlertSummary:
    """Resolve with a coded outcome and a note (encrypted). A resolved alert is a conflict; a
    later trigger of the same kind opens a new alert."""
    clinic_id = _clinic(principal)
    connection = await session.connection()
    row = await store.alert_in_clinic(connection, clinic_id, alert_id, lock=True)
    if row is None:
        raise NotFound(_NOT_FOUND)
    if row.status == "resolved":
        raise Conflict("this alert is resolved already")
    keys = await keyring.owner_keys(session, row.patient_id, active_only=True)
    resolution = keys.encrypt(
        table=ALERTS_TABLE,
        column="resolution_ct",
        row_id=str(alert_id),
        plaintext=msgspec.msgpack.encode(Resolution(outcome=request.outcome, note=request.note)),
    )
    changes: dict[str, Any] = {
        "status": "resolved",
        "resolved_at": now,
        "resolved_by": principal.subject_id,
        "resolution_ct": resolution,
        "next_escalation_at": None,
        "updated_at": now,
    }
    if row.acknowledged_at is None:
        changes.update(acknowledged_at=now, acknowledged_by=principal.subject_id)
    if not await store.update_alert_if_status(connection, alert_id, UNRESOLVED, **changes):
        raise Conflict("this alert changed meanwhile; reload it")  # pragma: no cover
    await audit_alert_event(
        session,
        actor=principal,
        action="alert.resolve",
        resource_type="alert",
        resource_id=alert_id,
        clinic_id=clinic_id,
        at=now,
    )
    updated = await store.alert_in_clinic(connection, clinic_id, alert_id)
    assert updated is not None
    return _summary(updated)
