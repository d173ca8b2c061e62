"""Escalating alerts nobody acknowledged within their service level (DESIGN §7, clinical-spec §5.3
rule 4: "unacknowledged alerts escalate ... after the service level expires").

All state is in the alert row: ``next_escalation_at`` is when the open alert next escalates and
``escalation_level`` how far it has gone. The timer of every instance runs `escalate_due_alerts`;
rows are locked (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite has one writer), so each step
happens once, and an escalation that fell due while the service was down happens at the first
pass after it starts. Each step notifies the next person of the clinic's on-call list, and the
last step the clinic admins together; then the alert stays open and visible without more steps.
The severity is left as the rules set it: it says how worrying the trigger is, the escalation
level says how late the response is, and lists order by both.
"""

import logging
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import store
from backend.domain.alerts.auditing import audit_alert_event
from backend.domain.alerts.routing import escalation_chain, notify_staff
from notifications.templates import MessageKind

logger = logging.getLogger("interlude.alerts")

_BATCH: Final = 100


async def escalate_due(session: AsyncSession, *, now: datetime, limit: int = _BATCH) -> int:
    """One batch of due escalations in the caller's transaction; returns how many escalated."""
    connection = await session.connection()
    due = await store.due_escalations(connection, now, limit=limit)
    for alert in due:
        level = alert.escalation_level + 1
        chain = await escalation_chain(connection, alert.clinic_id)
        if level > len(chain):
            # Nobody left to escalate to (no on-call list, no admins): stop the timer for it.
            await store.update_alert(connection, alert.id, next_escalation_at=None, updated_at=now)
            logger.warning(
                "alert could not escalate further: the clinic has no more responders",
                extra={"fields": {"alert": str(alert.id), "clinic": str(alert.clinic_id)}},
            )
            continue
        await notify_staff(
            session,
            kind=MessageKind.ALERT_ESCALATION,
            alert_id=alert.id,
            clinic_id=alert.clinic_id,
            severity=alert.severity,
            staff_ids=chain[level - 1],
            reason=f"escalation:{level}",
            now=now,
        )
        # At least a minute, so that a zero service level cannot make a pass loop on one row.
        interval = timedelta(minutes=max(alert.sla_minutes or 0, 1))
        more = level < len(chain) and alert.sla_minutes is not None
        await store.update_alert(
            connection,
            alert.id,
            escalation_level=level,
            next_escalation_at=now + interval if more else None,
            updated_at=now,
        )
        await audit_alert_event(
            session,
            actor=None,
            action="alert.escalate",
            resource_type="alert",
            resource_id=alert.id,
            clinic_id=alert.clinic_id,
            at=now,
        )
    return len(due)


async def escalate_due_alerts(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime
) -> int:
    """The timer's pass: batches in their own transactions until nothing is due."""
    total = 0
    while True:
        async with sessionmaker() as session:
            count = await escalate_due(session, now=now)
            await session.commit()
        total += count
        if count < _BATCH:
            return total
