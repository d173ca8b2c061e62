"""Linking a submitted questionnaire to the check-in that asked for it.

Called by `backend.domain.responses.service.submit_response` before it stores the answers, in
the same transaction. Rules:
- the check-in must be the patient's own, issued to them (not merged into another, not
  cancelled), and must have asked for the instrument;
- the window is judged by when the patient answered (`authored_at`, the phone's clock): an
  answer authored inside [opens_at, closes_at) is accepted even when it arrives after the window
  closed (a phone offline in a tunnel) and is then labelled late; one authored after the close is
  refused (the check-in expired and was, or will be, marked missed);
- a missed check-in answered in time but received late becomes answered (its answers count);
- the check-in is answered once every instrument it asked has a response; a retried submission
  of an instrument already answered changes nothing;
- a pending check-in answered in part (the app lists open and upcoming ones, so a patient may
  start before the claim loop sends it) has reached the patient: it becomes sent, so no push
  asks again for what they are answering and a re-plan never moves or cancels it (rows the
  patient answered are never re-issued); its reminder and missed marking work as for any sent
  one.
"""

import uuid
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins.repository import TABLE
from backend.lib.errors import Conflict, InvalidInput, NotFound

_c = TABLE.c
# The phone's clock may run a little ahead of ours (`responses.service.MAX_CLOCK_SKEW`).
CLOCK_SKEW = timedelta(minutes=5)
_ANSWERABLE = ("pending", "claimed", "sent", "answered", "missed")


class CheckInLink(msgspec.Struct, frozen=True, kw_only=True):
    check_in_id: uuid.UUID
    late: bool
    """Received after the window closed, though authored inside it."""
    completed: bool
    """Every instrument the check-in asked for is now answered."""


class CheckInExpired(Conflict):
    problem_type = "check-in-expired"
    title = "The check-in's window has closed"


async def link_response(
    session: AsyncSession,
    *,
    patient_id: uuid.UUID,
    check_in_id: uuid.UUID,
    instrument_id: str,
    authored_at: datetime,
    now: datetime,
    response_id: uuid.UUID | None = None,
) -> CheckInLink:
    """Validate the link and record the answer on the check-in (row locked until commit)."""
    connection = await session.connection()
    row = (
        await connection.execute(
            select(
                _c.id,
                _c.patient_id,
                _c.status,
                _c.instruments,
                _c.answered_instruments,
                _c.opens_at,
                _c.closes_at,
            )
            .where(_c.id == check_in_id)
            .with_for_update()
        )
    ).first()
    # Another patient's check-in is indistinguishable from none (no existence oracle).
    if row is None or row.patient_id != patient_id:
        raise NotFound("no such check-in")
    if row.status not in _ANSWERABLE:
        raise Conflict(f"this check-in is {row.status}; answer the check-in shown in the app")
    if instrument_id not in row.instruments:
        raise InvalidInput("this check-in did not ask for that questionnaire")
    if authored_at >= row.closes_at:
        raise CheckInExpired("this check-in expired before it was answered")
    if authored_at < row.opens_at - CLOCK_SKEW:
        raise InvalidInput("this check-in was not open yet when it was answered")
    late = now >= row.closes_at
    answered = list(row.answered_instruments)
    if instrument_id in answered:
        return CheckInLink(check_in_id=row.id, late=late, completed=row.status == "answered")
    answered.append(instrument_id)
    completed = set(row.instruments) <= set(answered)
    values: dict[str, object] = {"answered_instruments": answered, "updated_at": now}
    if row.status == "pending" and not completed:
        values |= {"status": "sent", "sent_at": now}
    # A missed check-in answered in time, received late, is answered: its answers count.
    if completed or row.status == "missed":
        values |= {
            "status": "answered",
            "answered_at": now,
            "answered_response_id": response_id if completed else None,
            "next_reminder_at": None,
            "lease_until": None,
        }
    await connection.execute(update(TABLE).where(_c.id == row.id).values(**values))
    return CheckInLink(check_in_id=row.id, late=late, completed=completed)
