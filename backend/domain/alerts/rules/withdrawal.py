"""A patient withdrawing monitoring consent from the app (not a clinical-spec rule [P]).

Withdrawal stops the patient's check-ins at once, so no missed check-in will ever be flagged: in
a depression programme a patient going silent is news the care team needs, so it is told.
Staff who record a withdrawal themselves already know; only the patient's own raises this.
"""

from __future__ import annotations

from datetime import datetime

from backend.domain.alerts.candidate import AlertCandidate, Evidence
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.raising import raise_alert

RULE_ID = "monitoring-withdrawn@1.0.0"


def monitoring_withdrawn_alert(
    *,
    patient_id: str,
    withdrawn_at: datetime,
    check_ins_cancelled: int,
    parameters: AlertParameters,
) -> AlertCandidate:
    """The care team's alert for a withdrawal at ``withdrawn_at``: one occurrence per withdrawal
    (a patient may withdraw again after the clinic recorded consent anew), attached to the
    patient's unresolved one if there is one."""
    return raise_alert(
        patient_id=patient_id,
        kind="MONITORING_WITHDRAWN",
        severity=parameters.missed_check_ins.withdrawal_severity,
        trigger=withdrawn_at.isoformat(),
        triggered_at=withdrawn_at,
        rule_id=RULE_ID,
        parameters=parameters,
        evidence=Evidence(
            measures={"withdrawn_by": "patient", "check_ins_cancelled": check_ins_cancelled}
        ),
    )
