"""Audit rows for identity and access events (no PHI: ids, roles, actions, outcomes only)."""

from typing import Literal, NotRequired, TypedDict, Unpack
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.service import AuditEvent, record_audit
from backend.identity.principal import Principal
from backend.lib.logging import request_id_var
from backend.state import Runtime

Outcome = Literal["success", "denied", "failed"]


class AuditFields(TypedDict):
    """What a caller says about an event (`audit_event`); the rest comes from the request."""

    action: str
    resource_type: str
    resource_id: UUID | str | None
    clinic_id: UUID | None
    purpose: str
    outcome: NotRequired[Outcome]
    actor: NotRequired[Principal | None]
    actor_id: NotRequired[UUID | None]
    actor_role: NotRequired[str | None]


def audit_event(runtime: Runtime, **fields: Unpack[AuditFields]) -> AuditEvent:
    """The event `audit` records, for a caller that stores it itself (`responses.service`).
    ``actor`` wins over ``actor_id``/``actor_role`` (for events before a principal exists, such
    as a login); with neither, ``anonymous``."""
    actor = fields.get("actor")
    actor_id = fields.get("actor_id")
    actor_role = fields.get("actor_role")
    if actor is not None:
        actor_id, actor_role = actor.subject_id, actor.role.value
    resource_id = fields["resource_id"]
    return AuditEvent(
        actor_id=str(actor_id) if actor_id is not None else None,
        actor_role=actor_role or "anonymous",
        action=fields["action"],
        resource_type=fields["resource_type"],
        resource_id=str(resource_id) if resource_id is not None else None,
        clinic_id=fields["clinic_id"],
        purpose=fields["purpose"],
        request_id=request_id_var.get(),
        outcome=fields.get("outcome", "success"),
        at=runtime.clock.now(),
    )


async def audit(session: AsyncSession, runtime: Runtime, **fields: Unpack[AuditFields]) -> None:
    """One audit row in the caller's transaction (`audit_event`).

    Purposes used here: ``security`` (signing in, sessions, refusals), ``treatment`` (reading or
    changing a patient's record for care), ``operations`` (clinics, staff, care teams, erasure).
    """
    await record_audit(session, audit_event(runtime, **fields))
