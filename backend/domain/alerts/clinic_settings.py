"""A clinic's alert settings: its parameter override (versioned rows) and its on-call list.

Parameters in force = the shipped defaults (`parameters/default.json`) with the clinic's newest
override merged on top (`parameters.build_parameters`); an override is checked in full when it
is saved, so evaluation never meets an invalid one. Overrides are immutable: a change is a new
version, and alerts keep recording the version that raised them.
"""

import uuid
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

import msgspec
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import store
from backend.domain.alerts.auditing import audit_alert_event
from backend.domain.alerts.parameters import (
    AlertParameters,
    ParameterError,
    build_parameters,
    read_document,
)
from backend.identity.principal import Principal
from backend.lib.errors import Conflict, FieldProblem, InvalidInput
from backend.lib.ids import uuid7
from backend.lib.preconditions import lock_clinic, require_current


class ParameterVersion(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    version: str
    """The merged version every alert records, e.g. ``interlude-default@1.0.0+clinic@3``."""
    override: dict[str, Any] | None
    saved_at: datetime | None


class OnCallList(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    staff_ids: list[uuid.UUID]


@cache
def _base_document() -> dict[str, Any]:
    return read_document("default")


@lru_cache(maxsize=256)
def parameters_from_override(override: str | None) -> AlertParameters:
    """The parameters in force given the clinic's newest override document (None = defaults);
    a caller may read the document itself (`responses.repository.submission_context`)."""
    overrides = () if override is None else (msgspec.json.decode(override),)
    return build_parameters(_base_document(), overrides)


async def parameters_for_clinic(session: AsyncSession, clinic_id: uuid.UUID) -> AlertParameters:
    connection = await session.connection()
    row = await store.latest_override(connection, clinic_id)
    return parameters_from_override(None if row is None else row.document)


async def current_parameters(session: AsyncSession, clinic_id: uuid.UUID) -> ParameterVersion:
    connection = await session.connection()
    row = await store.latest_override(connection, clinic_id)
    parameters = parameters_from_override(None if row is None else row.document)
    return ParameterVersion(
        version=parameters.version,
        override=None if row is None else msgspec.json.decode(row.document),
        saved_at=None if row is None else row.created_at,
    )


async def save_parameter_override(
    session: AsyncSession,
    principal: Principal,
    clinic_id: uuid.UUID,
    document: dict[str, Any],
    *,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> ParameterVersion:
    """Store a new override version for the clinic; InvalidInput if it does not build, Conflict if
    the version was used before, PreconditionFailed if ``if_match`` (entity tags of what a GET
    showed) no longer names the parameters in force."""
    await lock_clinic(session, clinic_id)
    if if_match is not None:
        current = await current_parameters(session, clinic_id)
        require_current(if_match, current, "the alert parameters")
    try:
        parameters = build_parameters(_base_document(), (document,))
    except ParameterError as error:
        # msgspec's message names the offending path, never a value worth hiding (no PHI here).
        raise InvalidInput(
            "the override is not a valid alert parameter document",
            errors=[FieldProblem(pointer="", code="invalid_parameters", message=str(error))],
        ) from None
    encoded = msgspec.json.encode(document).decode()
    connection = await session.connection()
    override_id = uuid7()
    stored = await store.insert_override(
        connection,
        {
            "id": override_id,
            "clinic_id": clinic_id,
            "parameter_set": str(document["parameterSet"])[:64],
            "version": str(document["version"])[:64],
            "document": encoded,
            "created_at": now,
            "created_by": principal.subject_id,
        },
    )
    if not stored:
        raise Conflict("this override version exists already; give the new one a new version")
    await audit_alert_event(
        session,
        actor=principal,
        action="alert_parameters.update",
        resource_type="alert_parameter_override",
        resource_id=override_id,
        clinic_id=clinic_id,
        at=now,
        purpose="operations",
    )
    return ParameterVersion(version=parameters.version, override=document, saved_at=now)


async def on_call(session: AsyncSession, clinic_id: uuid.UUID) -> OnCallList:
    connection = await session.connection()
    return OnCallList(staff_ids=await store.on_call_list(connection, clinic_id))


async def replace_on_call(
    session: AsyncSession,
    principal: Principal,
    clinic_id: uuid.UUID,
    staff_ids: list[uuid.UUID],
    *,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> OnCallList:
    """The clinic's on-call list, in escalation order: active clinicians or admins of the clinic,
    each once. PreconditionFailed if ``if_match`` no longer names the list in force."""
    # Always under the clinic's lock: two unconditional replacements must not interleave either.
    await lock_clinic(session, clinic_id)
    if if_match is not None:
        require_current(if_match, await on_call(session, clinic_id), "the on-call list")
    if len(set(staff_ids)) != len(staff_ids):
        raise InvalidInput("a staff member appears twice in the on-call list")
    connection = await session.connection()
    eligible = await store.active_clinical_staff(connection, clinic_id, staff_ids)
    problems = [
        FieldProblem(
            pointer=f"/staffIds/{n}",
            code="not_clinical_staff_of_this_clinic",
            message="not an active clinician or clinic admin of this clinic",
        )
        for n, staff_id in enumerate(staff_ids)
        if staff_id not in eligible
    ]
    if problems:
        raise InvalidInput("the on-call list names someone who cannot take alerts", errors=problems)
    await store.replace_on_call(connection, clinic_id, staff_ids, now)
    await audit_alert_event(
        session,
        actor=principal,
        action="alert_on_call.update",
        resource_type="alert_on_call",
        resource_id=clinic_id,
        clinic_id=clinic_id,
        at=now,
        purpose="operations",
    )
    return OnCallList(staff_ids=staff_ids)
