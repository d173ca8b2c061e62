"""The preference rules as pure functions: a patient's channels and quiet hours, a clinician's
channel and on-call state, decide each message's route."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from backend.domain.check_ins.quiet_hours import QuietHours, is_quiet
from backend.domain.outbox.gate import SEND, Drop, Hold, Send
from backend.domain.preferences.recipients import e164
from backend.domain.preferences.rules import (
    OFF_CALL_RECHECK,
    PatientPreferences,
    StaffPreferences,
    patient_route,
    staff_route,
)
from notifications.base import Channel, Urgency

PARIS = "Europe/Paris"
NOON = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # 12:00 in Paris
NIGHT = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 23:00 in Paris
MORNING = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Paris, quiet hours end
BOTH = PatientPreferences(channels=("push", "sms"), time_zone=PARIS)


def test_sms_needs_the_patients_opt_in_and_push_can_be_turned_off() -> None:
    push_only = PatientPreferences(time_zone=PARIS)
    assert not push_only.sms_opted_in
    later = NOON + timedelta(hours=3)
    assert patient_route("sms", push_only, now=NOON, expires_at=later, urgency=Urgency.NORMAL) == (
        Drop(reason="channel_not_chosen")
    )
    sms_only = PatientPreferences(channels=("sms",), time_zone=PARIS)
    assert patient_route("push", sms_only, now=NOON, expires_at=later, urgency=Urgency.HIGH) == (
        Drop(reason="channel_not_chosen")
    )
    assert patient_route("sms", BOTH, now=NOON, expires_at=later, urgency=Urgency.NORMAL) is SEND


def test_at_night_a_push_goes_silently_and_an_sms_waits_for_the_morning() -> None:
    late = MORNING + timedelta(hours=2)
    assert patient_route("push", BOTH, now=NIGHT, expires_at=late, urgency=Urgency.HIGH) == Send(
        urgency=Urgency.LOW
    )
    assert patient_route("sms", BOTH, now=NIGHT, expires_at=late, urgency=Urgency.NORMAL) == Hold(
        until=MORNING, reason="quiet_hours"
    )
    # The message's purpose ends before the morning: no text in the night, and none too late.
    early = MORNING - timedelta(minutes=30)
    assert patient_route("sms", BOTH, now=NIGHT, expires_at=early, urgency=Urgency.NORMAL) == (
        Drop(reason="quiet_hours")
    )


def test_a_patient_without_quiet_hours_gets_texts_at_night() -> None:
    never_quiet = PatientPreferences(
        channels=("sms",), time_zone=PARIS, quiet_hours=QuietHours(start=time(0), end=time(0))
    )
    assert (
        patient_route("sms", never_quiet, now=NIGHT, expires_at=MORNING, urgency=Urgency.LOW)
        is SEND
    )


@given(
    now=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    minutes=st.integers(min_value=-60, max_value=72 * 60),
    start=st.times(),
    end=st.times(),
)
def test_an_sms_is_never_sent_or_scheduled_inside_quiet_hours_nor_after_expiry(
    now: datetime, minutes: int, start: time, end: time
) -> None:
    quiet = QuietHours(
        start=start.replace(second=0, microsecond=0), end=end.replace(second=0, microsecond=0)
    )
    preferences = PatientPreferences(channels=("sms",), time_zone=PARIS, quiet_hours=quiet)
    expires = now + timedelta(minutes=minutes)
    route = patient_route("sms", preferences, now=now, expires_at=expires, urgency=Urgency.HIGH)
    zone = ZoneInfo(PARIS)
    if isinstance(route, Send):
        assert not is_quiet(now, zone, quiet)
    elif isinstance(route, Hold):
        assert now < route.until < expires
        assert not is_quiet(route.until, zone, quiet)


def test_off_call_clinicians_get_urgent_messages_now_and_routine_ones_later() -> None:
    off = StaffPreferences(on_call=False)
    assert staff_route(off, now=NOON, urgency=Urgency.NORMAL) == Hold(
        until=NOON + OFF_CALL_RECHECK, reason="off_call"
    )
    assert staff_route(off, now=NOON, urgency=Urgency.HIGH) is SEND
    pager = StaffPreferences(channel="webhook", webhook_endpoint="night-pager")
    assert staff_route(pager, now=NOON, urgency=Urgency.NORMAL) == Send(
        channel=Channel.WEBHOOK, recipient="night-pager"
    )
    assert staff_route(StaffPreferences(), now=NOON, urgency=Urgency.LOW) is SEND


def test_phone_numbers_are_sent_in_e164() -> None:
    assert e164("+44 20 7946 0001") == "+442079460001"
    assert e164("+1 (415) 555-0100") == "+14155550100"
    assert e164("020 7946 0001") is None  # not international: nobody can tell the country
    assert e164("+0123") is None
