"""Audit rows for identity and access events (no PHI: ids, roles, actions, outcomes only)."""

from typing import Literal
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.service import AuditEvent, record_audit
from backend.identity.principal import Principal
from backend.lib.logging import request_id_var
from backend.state import Runtime

Outcome = Literal["success", "denied", "failed"]


def audit_event(
    runtime: Runtime,
    *,
    action: str,
    resource_type: str,
    resource_id: UUID | str | None,
    clinic_id: UUID | None,
    purpose: str,
    outcome: Outcome = "success",
    actor: Principal | None = None,
    actor_id: UUID | None = None,
    actor_role: str | None = None,
) -> AuditEvent:
    """The event `audit` records, for a caller that stores it itself (`responses.service`)."""
    if actor is not None:
        actor_id, actor_role = actor.subject_id, actor.role.value
    return AuditEvent(
        actor_id=str(actor_id) if actor_id is not None else None,
        actor_role=actor_role or "anonymous",
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        clinic_id=clinic_id,
        purpose=purpose,
        request_id=request_id_var.get(),
        outcome=outcome,
        at=runtime.clock.now(),
    )


async def audit(
    session: AsyncSession,
    runtime: Runtime,
    *,
    action: str,
    resource_type: str,
    resource_id: UUID | str | None,
    clinic_id: UUID | None,
    purpose: str,
    outcome: Outcome = "success",
    actor: Principal | None = None,
    actor_id: UUID | None = None,
    actor_role: str | None = None,
) -> None:
    """One audit row in the caller's transaction. ``actor`` wins over ``actor_id``/``actor_role``
    (for events before a principal exists, such as a login); with neither, ``anonymous``.

    Purposes used here: ``security`` (signing in, sessions, refusals), ``treatment`` (reading or
    changing a patient's record for care), ``operations`` (clinics, staff, care teams, erasure).
    """
    await record_audit(
        session,
        audit_event(
            runtime,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            clinic_id=clinic_id,
            purpose=purpose,
            outcome=outcome,
            actor=actor,
            actor_id=actor_id,
            actor_role=actor_role,
        ),
    )
