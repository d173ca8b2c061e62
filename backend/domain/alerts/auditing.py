"""Audit rows for alert events: ids and verbs only, never PHI (kinds and severities stay out too:
"suicidality alert for patient X" is itself health information)."""

import uuid
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.service import AuditEvent, record_audit
from backend.identity.principal import Principal
from backend.lib.logging import request_id_var

SYSTEM_ROLE = "system"
"""The actor of what the rules and timers do (opening, escalating, holding)."""


async def audit_alert_event(
    session: AsyncSession,
    *,
    actor: Principal | None,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None,
    clinic_id: uuid.UUID,
    at: datetime,
    purpose: str = "treatment",
) -> None:
    await record_audit(
        session,
        AuditEvent(
            actor_id=None if actor is None else str(actor.subject_id),
            actor_role=SYSTEM_ROLE if actor is None else actor.role.value,
            action=action,
            resource_type=resource_type,
            resource_id=None if resource_id is None else str(resource_id),
            clinic_id=clinic_id,
            purpose=purpose,
            request_id=request_id_var.get(),
            at=at,
        ),
    )
