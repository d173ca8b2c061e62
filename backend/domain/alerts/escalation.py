"""Escalating alerts nobody acknowledged within their service level (DESIGN §7, clinical-spec §5.3
rule 4: "unacknowledged alerts escalate ... after the service level expires").

All state is in the alert row: ``next_escalation_at`` is when the open alert next escalates and
``escalation_level`` how far it has gone. The timer of every instance runs `escalate_due_alerts`;
rows are locked (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite has one writer), so each step
happens once, and an escalation that fell due while the service was down happens at the first
pass after it starts. Each step notifies the next person of the clinic's on-call list, and the
last step the clinic admins together; then the alert stays open and visible without more steps.

Severity: clinical-spec §5.3 rule 4 says unacknowledged suicidality alerts "escalate to the next
tier after the service level expires" (PRIORITY → URGENT → EMERGENCY), so each step of a §5.3
alert also raises its tier, and the next step comes after the new tier's (shorter) service level.
The spec says this for §5.3 only; other alerts keep the tier their rules gave (§5.1 and §5.2
raise a tier on evidence, e.g. ≥2 HIGH neuro items → URGENT, which the rules do), and their
escalation level says how late the response is. New evidence never lowers a tier
(`evaluation._open_or_attach`).
"""

import logging
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import store
from backend.domain.alerts.auditing import audit_alert_event
from backend.domain.alerts.candidate import SEVERITY_RANK, AlertKind, Severity
from backend.domain.alerts.clinic_settings import parameters_for_clinic
from backend.domain.alerts.routing import escalation_chain, notify_staff
from notifications.templates import MessageKind

logger = logging.getLogger("interlude.alerts")

_BATCH: Final = 100

SUICIDALITY_KINDS: Final[frozenset[AlertKind]] = frozenset(
    {"SUICIDALITY", "SUICIDE_ITEM_UNANSWERED"}
)
_SUICIDALITY_TIERS: Final[tuple[Severity, ...]] = ("priority", "urgent", "emergency")
"""The §5.3 rule 4 tiers, in order."""


def escalated_severity(kind: str, severity: Severity) -> Severity:
    """The tier an unacknowledged alert has after one escalation step: the next §5.3 tier for a
    suicidality alert (EMERGENCY stays EMERGENCY), else unchanged."""
    if kind not in SUICIDALITY_KINDS:
        return severity
    rank = SEVERITY_RANK[severity]
    return next((t for t in _SUICIDALITY_TIERS if SEVERITY_RANK[t] > rank), severity)


async def escalate_due(session: AsyncSession, *, now: datetime, limit: int = _BATCH) -> int:
    """One batch of due escalations in the caller's transaction; returns how many escalated."""
    connection = await session.connection()
    due = await store.due_escalations(connection, now, limit=limit)
    for alert in due:
        chain = await escalation_chain(connection, alert.clinic_id)
        severity = escalated_severity(alert.kind, alert.severity)
        raises = severity != alert.severity
        level = alert.escalation_level + 1
        if level > len(chain):
            if not chain or not raises:
                # Nobody left to escalate to (no on-call list, no admins), and no higher tier:
                # stop the timer for it.
                await store.update_alert(
                    connection, alert.id, next_escalation_at=None, updated_at=now
                )
                logger.warning(
                    "alert could not escalate further: the clinic has no more responders",
                    extra={"fields": {"alert": str(alert.id), "clinic": str(alert.clinic_id)}},
                )
                continue
            # The chain is spent but the tier still rises (§5.3): its last step hears it again.
            level = len(chain)
        sla_minutes: int | None = alert.sla_minutes
        raised: dict[str, object] = {}
        if raises:
            parameters = await parameters_for_clinic(session, alert.clinic_id)
            sla_minutes = parameters.sla_for(severity)
            raised = {
                "severity": severity,
                "severity_rank": SEVERITY_RANK[severity],
                "sla_minutes": sla_minutes,
            }
        await notify_staff(
            session,
            kind=MessageKind.ALERT_ESCALATION,
            alert_id=alert.id,
            clinic_id=alert.clinic_id,
            severity=severity,
            staff_ids=chain[level - 1],
            reason=f"escalation:{level}:{severity}",
            now=now,
        )
        # At least a minute, so that a zero service level cannot make a pass loop on one row.
        interval = timedelta(minutes=max(sla_minutes or 0, 1))
        more = sla_minutes is not None and (
            level < len(chain) or escalated_severity(alert.kind, severity) != severity
        )
        await store.update_alert(
            connection,
            alert.id,
            escalation_level=level,
            next_escalation_at=now + interval if more else None,
            updated_at=now,
            **raised,
        )
        for action in (
            ("alert.escalate", "alert.severity_raised") if raises else ("alert.escalate",)
        ):
            await audit_alert_event(
                session,
                actor=None,
                action=action,
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
