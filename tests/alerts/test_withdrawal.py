"""A patient withdrawing monitoring from the app: the care team's alert (pure rule)."""

from datetime import timedelta

from backend.domain.alerts.parameters import build_parameters, load_parameters, read_document
from backend.domain.alerts.rules.withdrawal import monitoring_withdrawn_alert
from tests.alerts.builders import T0

DEFAULTS = load_parameters()


def test_a_withdrawal_is_a_routine_clinician_task_with_a_service_level():
    alert = monitoring_withdrawn_alert(
        patient_id="p1", withdrawn_at=T0, check_ins_cancelled=3, parameters=DEFAULTS
    )
    assert (alert.kind, alert.severity, alert.audience) == (
        "MONITORING_WITHDRAWN",
        "routine",
        "clinician",
    )
    assert alert.sla_minutes == DEFAULTS.sla_for("routine") is not None
    assert alert.patient_action is None
    assert not alert.hold_next_n2o_session
    assert alert.triggered_at == T0
    assert alert.evidence.measures == {"withdrawn_by": "patient", "check_ins_cancelled": 3}
    assert alert.parameter_version == DEFAULTS.version


def test_each_withdrawal_is_its_own_occurrence_of_one_alert_per_patient():
    first, again, other = (
        monitoring_withdrawn_alert(
            patient_id=patient, withdrawn_at=at, check_ins_cancelled=0, parameters=DEFAULTS
        )
        for patient, at in (("p1", T0), ("p1", T0 + timedelta(days=9)), ("p2", T0))
    )
    assert first.occurrence_key != again.occurrence_key
    assert first.dedup_key == again.dedup_key != other.dedup_key
    # The same withdrawal seen twice is the same trigger: acted on once.
    assert (
        monitoring_withdrawn_alert(
            patient_id="p1", withdrawn_at=T0, check_ins_cancelled=5, parameters=DEFAULTS
        ).occurrence_key
        == first.occurrence_key
    )


def test_a_clinic_sets_the_tier_and_info_keeps_it_on_the_dashboard():
    override = {
        "parameterSet": "clinic",
        "version": "1",
        "missedCheckIns": {"withdrawalSeverity": "info"},
    }
    quiet = build_parameters(read_document("default"), (override,))
    alert = monitoring_withdrawn_alert(
        patient_id="p1", withdrawn_at=T0, check_ins_cancelled=0, parameters=quiet
    )
    assert (alert.severity, alert.sla_minutes) == ("info", None)
    priority = build_parameters(
        read_document("default"),
        ({**override, "missedCheckIns": {"withdrawalSeverity": "priority"}},),
    )
    alert = monitoring_withdrawn_alert(
        patient_id="p1", withdrawn_at=T0, check_ins_cancelled=0, parameters=priority
    )
    assert (alert.severity, alert.sla_minutes) == ("priority", priority.sla_for("priority"))
