"""Missed check-ins (clinical-spec §4.2): reminder, then clinician flag, sooner after a session."""

from datetime import timedelta

from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import load_parameters
from backend.domain.alerts.timeline import MissedCheckIn, PatientTimeline
from tests.alerts.builders import T0, day, n2o_session

DEFAULTS = load_parameters()


def evaluate(due, now):
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=(n2o_session("s1", T0),),
        missed_check_ins=(MissedCheckIn(id="c1", due=due, session_id="s1"),),
    )
    return [(c.kind, c.severity, c.audience) for c in evaluate_alerts(timeline, DEFAULTS, now=now)]


def test_day_14_check_in_reminder_after_12h_then_flag_after_48h():
    due = day(14)
    assert evaluate(due, due + timedelta(hours=11)) == []
    assert evaluate(due, due + timedelta(hours=12)) == [("CHECK_IN_REMINDER", "info", "patient")]
    assert sorted(evaluate(due, due + timedelta(hours=48))) == [
        ("CHECK_IN_REMINDER", "info", "patient"),
        ("MISSED_CHECK_IN", "routine", "clinician"),
    ]


def test_check_in_just_after_a_session_is_chased_sooner():
    due = day(1)
    assert evaluate(due, due + timedelta(hours=6)) == [("CHECK_IN_REMINDER", "info", "patient")]
    assert ("MISSED_CHECK_IN", "priority", "clinician") in evaluate(due, due + timedelta(hours=24))


def test_reminder_is_once_per_check_in_and_the_flag_merges_per_kind():
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=(n2o_session("s1", T0),),
        missed_check_ins=(
            MissedCheckIn(id="c1", due=day(7)),
            MissedCheckIn(id="c2", due=day(14)),
        ),
    )
    found = evaluate_alerts(timeline, DEFAULTS, now=day(20))
    reminders = [c for c in found if c.kind == "CHECK_IN_REMINDER"]
    flags = [c for c in found if c.kind == "MISSED_CHECK_IN"]
    assert sorted(c.dedup_key for c in reminders) == [
        "p1:CHECK_IN_REMINDER:c1",
        "p1:CHECK_IN_REMINDER:c2",
    ]
    assert {c.dedup_key for c in flags} == {"p1:MISSED_CHECK_IN"}
    assert all(c.evidence.session_ids == ("s1",) for c in found)
