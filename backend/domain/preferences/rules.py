"""What a recipient's preferences make of one queued message (pure: data in, a route out).

Patients choose their channels, in order (``push``, ``sms``); SMS reaches a phone number, so it
is off until the patient (or their clinician, with them) opts in. Quiet hours are the patient's
own (`backend.domain.check_ins.quiet_hours`): check-ins are already placed outside them, so a push
that still falls inside goes silently (low urgency), and an SMS — which rings — waits for the end
of the quiet period if that comes before the message's purpose expires, else is dropped (the
fallback moves on to staff).

Clinicians choose e-mail or a named clinic webhook (a pager or chat endpoint) and say whether
they are on call. Off call, routine messages wait until they are back on call (never dropped:
an alert must reach someone); urgent ones go anyway.
"""

from datetime import datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from backend.domain.check_ins.quiet_hours import QuietHours, is_quiet, place_in_window
from backend.domain.outbox.gate import SEND, Drop, Hold, Route, Send
from notifications.base import Channel, Urgency

PatientChannel = Literal["push", "sms"]
StaffChannel = Literal["email", "webhook"]
DEFAULT_PATIENT_CHANNELS: Final[tuple[PatientChannel, ...]] = ("push",)
# How often a message held for an off-call clinician looks again.
OFF_CALL_RECHECK: Final = timedelta(minutes=15)


class PatientPreferences(msgspec.Struct, frozen=True, kw_only=True):
    channels: tuple[PatientChannel, ...] = DEFAULT_PATIENT_CHANNELS
    quiet_hours: QuietHours = QuietHours()
    time_zone: str = "UTC"

    @property
    def sms_opted_in(self) -> bool:
        return "sms" in self.channels


class StaffPreferences(msgspec.Struct, frozen=True, kw_only=True):
    channel: StaffChannel = "email"
    webhook_endpoint: str | None = None
    on_call: bool = True


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def patient_route(
    channel: PatientChannel,
    preferences: PatientPreferences,
    *,
    now: datetime,
    expires_at: datetime | None,
    urgency: Urgency,
) -> Route:
    """A push (``channel="push"``) or an SMS to a patient."""
    if channel not in preferences.channels:
        return Drop(reason="channel_not_chosen")
    zone = _zone(preferences.time_zone)
    if not is_quiet(now, zone, preferences.quiet_hours):
        return SEND
    if channel == "push":
        # Shown on the lock screen without sound or wake-up (urgency maps to each platform's).
        return Send(urgency=Urgency.LOW) if urgency is not Urgency.LOW else SEND
    if expires_at is None or expires_at <= now:
        return Drop(reason="quiet_hours")
    placement = place_in_window(now, now, expires_at, zone, preferences.quiet_hours)
    if placement.during_quiet_hours or placement.at <= now:
        return Drop(reason="quiet_hours")  # quiet until the window closes: staff follow up
    return Hold(until=placement.at, reason="quiet_hours")


def staff_route(preferences: StaffPreferences, *, now: datetime, urgency: Urgency) -> Route:
    if not preferences.on_call and urgency is not Urgency.HIGH:
        return Hold(until=now + OFF_CALL_RECHECK, reason="off_call")
    if preferences.channel == "webhook" and preferences.webhook_endpoint is not None:
        return Send(channel=Channel.WEBHOOK, recipient=preferences.webhook_endpoint)
    return SEND
