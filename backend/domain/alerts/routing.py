"""Who hears about an alert, and the outbox rows that tell them.

First responders are the patient's care team (its active clinicians and clinic admins); a patient
without a team, or a team with nobody active, goes to every active clinician of the clinic, then
to its clinic admins, so an alert is never addressed to no one. Escalation follows the clinic's
on-call list in order, one person per step, and finally the clinic admins together.

Messages carry ids only (templates are PHI-free); the recipient's address is resolved at send
time. Urgent and emergency alerts ask the provider to wake the device (high urgency).
"""

import uuid
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import store
from backend.domain.alerts.candidate import SEVERITY_RANK, Severity
from backend.domain.outbox.enqueue import OutboxRequest, RecipientType, enqueue
from notifications.base import Channel, Urgency
from notifications.templates import MessageKind

STAFF_CHANNEL: Final = Channel.EMAIL
# An unacknowledged alert matters until someone looks: a long TTL, retried generously.
_TTL_SECONDS: Final = 7 * 24 * 3600
_MAX_ATTEMPTS: Final = 12


async def first_responders(
    connection: AsyncConnection,
    clinic_id: uuid.UUID,
    care_team_id: uuid.UUID | None,
    severity: Severity = "routine",
) -> list[uuid.UUID]:
    """The care team; for URGENT and EMERGENCY also the first person on call at once
    (clinical-spec §5.1 URGENT: "immediate clinician alert (on-call)"; §5.3 URGENT: "routed to
    on-call out of hours"). Staffed hours are not modelled, so on-call hears every such alert;
    an off-call clinician's own preferences still apply at send time."""
    team: list[uuid.UUID] = []
    if care_team_id is not None:
        team = await store.care_team_clinicians(connection, care_team_id)
    if not team:
        team = await store.clinic_staff_with_role(connection, clinic_id, "clinician")
    if not team:
        team = await store.clinic_staff_with_role(connection, clinic_id, "clinic_admin")
    if SEVERITY_RANK[severity] >= SEVERITY_RANK["urgent"]:
        on_call = await store.on_call_list(connection, clinic_id)
        if on_call and on_call[0] not in team:
            team = [*team, on_call[0]]
    return team


async def escalation_chain(
    connection: AsyncConnection, clinic_id: uuid.UUID
) -> list[list[uuid.UUID]]:
    """Level n (from 1) notifies ``chain[n - 1]``."""
    chain = [[staff_id] for staff_id in await store.on_call_list(connection, clinic_id)]
    admins = await store.clinic_staff_with_role(connection, clinic_id, "clinic_admin")
    if admins:
        chain.append(admins)
    return chain


def urgency_for(severity: str) -> Urgency:
    rank = SEVERITY_RANK.get(severity, 0)  # type: ignore[call-overload]
    return Urgency.HIGH if rank >= SEVERITY_RANK["urgent"] else Urgency.NORMAL


async def notify_staff(
    session: AsyncSession,
    *,
    kind: MessageKind,
    alert_id: uuid.UUID,
    clinic_id: uuid.UUID,
    severity: Severity | str,
    staff_ids: list[uuid.UUID],
    reason: str,
    now: datetime,
) -> int:
    """One outbox row per recipient; ``reason`` makes the idempotency key (the opening, an
    occurrence, an escalation level), so a retried transaction adds nothing twice."""
    added = 0
    for staff_id in staff_ids:
        added += await enqueue(
            session,
            OutboxRequest(
                idempotency_key=f"alert:{alert_id}:{reason}:{staff_id}",
                channel=STAFF_CHANNEL,
                kind=kind,
                recipient_type=RecipientType.STAFF,
                recipient_id=str(staff_id),
                clinic_id=clinic_id,
                alert_id=str(alert_id),
                collapse_key=f"alert:{alert_id}",
                urgency=urgency_for(str(severity)),
                ttl_seconds=_TTL_SECONDS,
                max_attempts=_MAX_ATTEMPTS,
            ),
            now=now,
        )
    return added
