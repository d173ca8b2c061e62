"""All SQL for stored alerts, occurrences, N2O holds, clinic parameter overrides and on-call lists.

Core statements on the caller's connection (same transaction; nothing here commits): evaluation
runs inside the submission hot path. Inserts that race another instance use ON CONFLICT DO
NOTHING against the unique indexes, so a trigger is stored once whoever gets there first.
"""

import json
import uuid
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import (
    String,
    Table,
    and_,
    any_,
    bindparam,
    column,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.direct import DirectStatement
from backend.db.models.alert import (
    Alert,
    AlertOccurrence,
    AlertOnCallEntry,
    AlertParameterOverride,
    N2OSessionHold,
)
from backend.db.models.clinic import CareTeamMembership
from backend.db.models.patient import Patient
from backend.db.models.staff import StaffMember
from backend.domain.alerts.rows import AnyRow

ALERTS: Final = cast(Table, Alert.__table__)  # type: ignore[attr-defined]
OCCURRENCES: Final = cast(Table, AlertOccurrence.__table__)  # type: ignore[attr-defined]
HOLDS: Final = cast(Table, N2OSessionHold.__table__)  # type: ignore[attr-defined]
OVERRIDES: Final = cast(Table, AlertParameterOverride.__table__)  # type: ignore[attr-defined]
ON_CALL: Final = cast(Table, AlertOnCallEntry.__table__)  # type: ignore[attr-defined]
_PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
_STAFF: Final = cast(Table, StaffMember.__table__)  # type: ignore[attr-defined]
_MEMBERS: Final = cast(Table, CareTeamMembership.__table__)  # type: ignore[attr-defined]

_a = ALERTS.c
_o = OCCURRENCES.c
_h = HOLDS.c
_UNRESOLVED = _a.status != "resolved"
_ACTIVE_HOLD = _h.cleared_at.is_(None)
# ON CONFLICT names a partial index by repeating its predicate; PostgreSQL matches it only as
# literal SQL (a bound parameter cannot prove the implication), so the index's own text is used.
_UNRESOLVED_INDEX_WHERE = text("status <> 'resolved'")
_ACTIVE_HOLD_INDEX_WHERE = text("cleared_at IS NULL")


def _insert(connection: AsyncConnection, table: Table) -> Any:
    return (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(table)


# --- occurrences ---------------------------------------------------------------------------


async def seen_occurrence_keys(
    connection: AsyncConnection, patient_id: uuid.UUID, keys: list[str]
) -> set[str]:
    """Which of ``keys`` the patient's stored occurrences already hold. Every evaluation in a
    course asks (the engine reports every past trigger again), so the statement is built once
    and takes the keys as one array parameter rather than an expanding list."""
    if not keys:
        return set()
    if connection.dialect.name == "postgresql":
        rows = await _SEEN_KEYS_PG.all(connection, {"patient_id": patient_id, "keys": keys})
    else:
        parameters = {"patient_id": patient_id, "keys": json.dumps(keys)}
        rows = await _SEEN_KEYS_SQLITE.all(connection, parameters)
    return {row.occurrence_key for row in rows}


_SEEN_KEYS_PG: Final = DirectStatement(
    select(_o.occurrence_key).where(
        _o.patient_id == bindparam("patient_id"),
        _o.occurrence_key == any_(bindparam("keys", type_=postgresql.ARRAY(String))),
    )
)
_SEEN_KEYS_SQLITE: Final = DirectStatement(
    select(_o.occurrence_key).where(
        _o.patient_id == bindparam("patient_id"),
        _o.occurrence_key.in_(
            select(column("value", String)).select_from(
                func.json_each(bindparam("keys", type_=String))
            )
        ),
    )
)


async def insert_occurrence_unless_seen(
    connection: AsyncConnection, values: dict[str, Any]
) -> bool:
    """True if stored; False if this patient's occurrence key was already stored (a repeat)."""
    statement = (
        _insert(connection, OCCURRENCES)
        .values(values)
        .on_conflict_do_nothing(index_elements=["patient_id", "occurrence_key"])
        .returning(_o.id)
    )
    return (await connection.execute(statement)).first() is not None


async def link_occurrence(
    connection: AsyncConnection, occurrence_id: uuid.UUID, alert_id: uuid.UUID
) -> None:
    await connection.execute(
        update(OCCURRENCES).where(_o.id == occurrence_id).values(alert_id=alert_id)
    )


async def occurrences_of(connection: AsyncConnection, alert_id: uuid.UUID) -> list[AnyRow]:
    statement = select(OCCURRENCES).where(_o.alert_id == alert_id).order_by(_o.triggered_at, _o.id)
    return list((await connection.execute(statement)).all())


# --- alerts --------------------------------------------------------------------------------


async def unresolved_alert(
    connection: AsyncConnection, patient_id: uuid.UUID, dedup_key: str
) -> AnyRow | None:
    statement = select(ALERTS).where(
        _a.patient_id == patient_id, _a.dedup_key == dedup_key, _UNRESOLVED
    )
    return (await connection.execute(statement)).first()


async def insert_alert_unless_unresolved(
    connection: AsyncConnection, values: dict[str, Any]
) -> bool:
    """True if opened; False if the patient already has an unresolved alert with the key."""
    statement = (
        _insert(connection, ALERTS)
        .values(values)
        .on_conflict_do_nothing(
            index_elements=["patient_id", "dedup_key"], index_where=_UNRESOLVED_INDEX_WHERE
        )
        .returning(_a.id)
    )
    return (await connection.execute(statement)).first() is not None


async def alert_in_clinic(
    connection: AsyncConnection, clinic_id: uuid.UUID, alert_id: uuid.UUID, *, lock: bool = False
) -> AnyRow | None:
    statement = select(ALERTS).where(_a.id == alert_id, _a.clinic_id == clinic_id)
    if lock and connection.dialect.name == "postgresql":
        statement = statement.with_for_update()
    return (await connection.execute(statement)).first()


async def update_alert(connection: AsyncConnection, alert_id: uuid.UUID, **values: Any) -> None:
    await connection.execute(update(ALERTS).where(_a.id == alert_id).values(**values))


async def update_alert_if_status(
    connection: AsyncConnection, alert_id: uuid.UUID, statuses: tuple[str, ...], **values: Any
) -> bool:
    """Compare-and-set on the status: False if another request changed it first."""
    result = await connection.execute(
        update(ALERTS).where(_a.id == alert_id, _a.status.in_(statuses)).values(**values)
    )
    return bool(cast(Any, result).rowcount)


async def page_of_alerts(
    connection: AsyncConnection,
    clinic_id: uuid.UUID,
    *,
    statuses: tuple[str, ...],
    severities: tuple[str, ...] | None,
    patient_id: uuid.UUID | None,
    after: tuple[int, datetime, uuid.UUID] | None,
    limit: int,
) -> list[AnyRow]:
    """Most severe first, then oldest first: the order a clinician works through them."""
    statement = select(ALERTS).where(_a.clinic_id == clinic_id, _a.status.in_(statuses))
    if severities:
        statement = statement.where(_a.severity.in_(severities))
    if patient_id is not None:
        statement = statement.where(_a.patient_id == patient_id)
    if after is not None:
        rank, opened, alert_id = after
        statement = statement.where(
            or_(
                _a.severity_rank < rank,
                and_(_a.severity_rank == rank, _a.opened_at > opened),
                and_(_a.severity_rank == rank, _a.opened_at == opened, _a.id > alert_id),
            )
        )
    statement = statement.order_by(_a.severity_rank.desc(), _a.opened_at, _a.id).limit(limit)
    return list((await connection.execute(statement)).all())


async def due_escalations(
    connection: AsyncConnection, now: datetime, *, limit: int
) -> list[AnyRow]:
    """Open alerts whose next escalation is due, locked so one instance escalates each once."""
    statement = (
        select(ALERTS)
        .where(
            _a.status == "open", _a.next_escalation_at.is_not(None), _a.next_escalation_at <= now
        )
        .order_by(_a.next_escalation_at, _a.id)
        .limit(limit)
    )
    if connection.dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return list((await connection.execute(statement)).all())


# --- holds ---------------------------------------------------------------------------------


async def insert_hold_unless_active(connection: AsyncConnection, values: dict[str, Any]) -> bool:
    statement = (
        _insert(connection, HOLDS)
        .values(values)
        .on_conflict_do_nothing(index_elements=["patient_id"], index_where=_ACTIVE_HOLD_INDEX_WHERE)
        .returning(_h.id)
    )
    return (await connection.execute(statement)).first() is not None


async def active_hold(connection: AsyncConnection, patient_id: uuid.UUID) -> AnyRow | None:
    statement = select(HOLDS).where(_h.patient_id == patient_id, _ACTIVE_HOLD)
    return (await connection.execute(statement)).first()


async def clear_hold(
    connection: AsyncConnection, hold_id: uuid.UUID, *, by: uuid.UUID, at: datetime
) -> bool:
    result = await connection.execute(
        update(HOLDS).where(_h.id == hold_id, _ACTIVE_HOLD).values(cleared_at=at, cleared_by=by)
    )
    return bool(cast(Any, result).rowcount)


# --- clinic settings: parameter overrides, on-call -----------------------------------------


async def latest_override(connection: AsyncConnection, clinic_id: uuid.UUID) -> AnyRow | None:
    return (await connection.execute(_LATEST_OVERRIDE, {"clinic_id": clinic_id})).first()


NEWEST_OVERRIDE_FIRST: Final = (OVERRIDES.c.created_at.desc(), OVERRIDES.c.id.desc())
"""The order in which a clinic's override versions take precedence (the first is in force)."""
# Built once: every submission reads the clinic's parameters.
_LATEST_OVERRIDE: Final = (
    select(OVERRIDES)
    .where(OVERRIDES.c.clinic_id == bindparam("clinic_id"))
    .order_by(*NEWEST_OVERRIDE_FIRST)
    .limit(1)
)


async def insert_override(connection: AsyncConnection, values: dict[str, Any]) -> bool:
    statement = (
        _insert(connection, OVERRIDES)
        .values(values)
        .on_conflict_do_nothing(index_elements=["clinic_id", "version"])
        .returning(OVERRIDES.c.id)
    )
    return (await connection.execute(statement)).first() is not None


async def on_call_list(connection: AsyncConnection, clinic_id: uuid.UUID) -> list[uuid.UUID]:
    """The clinic's on-call staff in order, skipping anyone no longer active."""
    c = ON_CALL.c
    statement = (
        select(c.staff_id)
        .join(_STAFF, _STAFF.c.id == c.staff_id)
        .where(c.clinic_id == clinic_id, _STAFF.c.status == "active")
        .order_by(c.position)
    )
    return [row.staff_id for row in await connection.execute(statement)]


async def replace_on_call(
    connection: AsyncConnection, clinic_id: uuid.UUID, staff_ids: list[uuid.UUID], now: datetime
) -> None:
    await connection.execute(ON_CALL.delete().where(ON_CALL.c.clinic_id == clinic_id))
    if staff_ids:
        await connection.execute(
            ON_CALL.insert(),
            [
                {"clinic_id": clinic_id, "position": n, "staff_id": s, "updated_at": now}
                for n, s in enumerate(staff_ids)
            ],
        )


async def remove_from_on_call(
    connection: AsyncConnection, clinic_id: uuid.UUID, staff_id: uuid.UUID
) -> bool:
    """Take one person off the clinic's on-call list; the others keep their order (positions
    only order the list, so the gap left behind changes nothing)."""
    result = await connection.execute(
        ON_CALL.delete().where(ON_CALL.c.clinic_id == clinic_id, ON_CALL.c.staff_id == staff_id)
    )
    return bool(result.rowcount)


async def active_clinical_staff(
    connection: AsyncConnection, clinic_id: uuid.UUID, staff_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``staff_ids`` are active clinicians or clinic admins of the clinic."""
    s = _STAFF.c
    statement = select(s.id).where(
        s.id.in_(staff_ids),
        s.clinic_id == clinic_id,
        s.status == "active",
        s.role.in_(("clinician", "clinic_admin")),
    )
    return {row.id for row in await connection.execute(statement)}


# --- people an alert goes to ----------------------------------------------------------------


async def patient_routing(connection: AsyncConnection, patient_id: uuid.UUID) -> AnyRow | None:
    p = _PATIENTS.c
    statement = select(p.clinic_id, p.care_team_id, p.status).where(p.id == patient_id)
    return (await connection.execute(statement)).first()


async def care_team_clinicians(
    connection: AsyncConnection, care_team_id: uuid.UUID
) -> list[uuid.UUID]:
    s = _STAFF.c
    statement = (
        select(s.id)
        .join(_MEMBERS, _MEMBERS.c.staff_id == s.id)
        .where(
            _MEMBERS.c.care_team_id == care_team_id,
            s.status == "active",
            s.role.in_(("clinician", "clinic_admin")),
        )
        .order_by(s.id)
    )
    return [row.id for row in await connection.execute(statement)]


async def clinic_staff_with_role(
    connection: AsyncConnection, clinic_id: uuid.UUID, role: str
) -> list[uuid.UUID]:
    s = _STAFF.c
    statement = (
        select(s.id)
        .where(s.clinic_id == clinic_id, s.status == "active", s.role == role)
        .order_by(s.id)
    )
    return [row.id for row in await connection.execute(statement)]
