"""Missed check-ins (clinical-spec §4.2): one reminder to the patient after 12 h, then a clinician
"missed check-in" flag after 48 h. Risk-scaled [P]: a check-in due within 72 h of its session's
start falls in the days of side effects and early rebound, so the reminder comes after 6 h and
the flag after 24 h, at PRIORITY. Times run from the check-in's due time."""

from __future__ import annotations

from datetime import datetime, timedelta

from backend.domain.alerts.candidate import AlertCandidate, Evidence
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.raising import raise_alert
from backend.domain.alerts.timeline import MissedCheckIn, PatientTimeline, TreatmentSession

RULE_ID = "missed-check-in@1.0.0"


def missed_check_in_alerts(
    timeline: PatientTimeline, parameters: AlertParameters, now: datetime
) -> list[AlertCandidate]:
    rules = parameters.missed_check_ins
    sessions = {s.id: s for s in timeline.sessions}
    alerts = []
    for check_in in sorted(timeline.missed_check_ins, key=lambda c: (c.due, c.id)):
        session = _session_of(check_in, sessions, timeline.sessions)
        recent = session is not None and check_in.due - session.start <= timedelta(
            hours=rules.recent_session_hours
        )
        remind_after = rules.recent_reminder_after_hours if recent else rules.reminder_after_hours
        flag_after = rules.recent_flag_after_hours if recent else rules.flag_after_hours
        evidence = Evidence(
            check_in_ids=(check_in.id,),
            session_ids=() if session is None else (session.id,),
            measures={"recent_session": recent},
        )
        remind_at = check_in.due + timedelta(hours=remind_after)
        if now >= remind_at:
            alerts.append(
                raise_alert(
                    patient_id=timeline.patient_id,
                    kind="CHECK_IN_REMINDER",
                    severity="info",
                    trigger=check_in.id,
                    triggered_at=remind_at,
                    rule_id=RULE_ID,
                    parameters=parameters,
                    evidence=evidence,
                    audience="patient",
                    patient_action="remind_check_in",
                )
            )
        flag_at = check_in.due + timedelta(hours=flag_after)
        if now >= flag_at:
            alerts.append(
                raise_alert(
                    patient_id=timeline.patient_id,
                    kind="MISSED_CHECK_IN",
                    severity=rules.recent_flag_severity if recent else rules.flag_severity,
                    trigger=check_in.id,
                    triggered_at=flag_at,
                    rule_id=RULE_ID,
                    parameters=parameters,
                    evidence=evidence,
                )
            )
    return alerts


def _session_of(
    check_in: MissedCheckIn,
    by_id: dict[str, TreatmentSession],
    sessions: tuple[TreatmentSession, ...],
) -> TreatmentSession | None:
    """The check-in's own session, else the latest session started by its due time."""
    if check_in.session_id is not None and check_in.session_id in by_id:
        return by_id[check_in.session_id]
    started = [s for s in sessions if s.start <= check_in.due]
    return max(started, key=lambda s: (s.start, s.id)) if started else None
