"""Ketamine and esketamine red flags (clinical-spec §5.2)."""

from datetime import timedelta

import pytest

from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import load_parameters
from backend.domain.alerts.timeline import PatientTimeline, TreatmentSession
from tests.alerts.builders import T0, day, n2o_session, response

DEFAULTS = load_parameters()
KETAMINE = TreatmentSession(id="k1", modality="ketamine_iv", start=T0, end=T0 + timedelta(hours=2))


def evaluate(*responses, session=KETAMINE):
    timeline = PatientTimeline(patient_id="p1", sessions=(session,), responses=tuple(responses))
    return [
        (c.kind, c.severity, c.patient_action)
        for c in evaluate_alerts(timeline, DEFAULTS, now=day(10))
    ]


def bladder(**yes):
    answers = {
        "kb-frequency": False,
        "kb-dysuria": False,
        "kb-blood": False,
        "kb-pain": 0,
        "kb-nocturia": False,
        "kb-leaking": False,
        "km-craving": False,
        "km-use-outside": False,
        "km-more-doses": False,
    }
    return response("ketamine-bladder-misuse", "b1", day(3), answers | yes)


def side_effects(at, **answers):
    base = {
        f"se-{n}": 0
        for n in (
            "nausea",
            "vomiting",
            "headache",
            "dizziness",
            "sedation",
            "dissociation",
            "anxiety",
            "blurred-vision",
            "numbness",
            "feeling-drunk",
        )
    }
    return response("side-effects", "e1", at, base | answers)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"kb-frequency": True}, [("KETAMINE_BLADDER", "routine", None)]),
        ({"kb-blood": True}, [("KETAMINE_BLADDER", "high", None)]),
        ({"kb-pain": 3, "kb-nocturia": True}, [("KETAMINE_BLADDER", "high", None)]),
        ({"kb-pain": 2}, [("KETAMINE_BLADDER", "routine", None)]),
        ({"km-craving": True}, [("KETAMINE_MISUSE", "high", None)]),
        ({}, []),
    ],
)
def test_bladder_and_misuse(answers, expected):
    assert evaluate(bladder(**answers)) == expected


def test_hypertensive_symptoms_tell_the_patient_to_call_emergency_services():
    found = evaluate(side_effects(T0 + timedelta(hours=4), **{"se-bp-chest-pain": True}))
    assert found == [("BLOOD_PRESSURE", "urgent", "call_emergency_services_now")]


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expected"),
    [(178, 100, "routine"), (180, 90, "urgent"), (130, 110, "urgent"), (130, 85, None)],
)
def test_home_blood_pressure(systolic, diastolic, expected):
    reading = response(
        "blood-pressure",
        "bp1",
        day(1),
        {"bp-time-point": 4, "bp-systolic": systolic, "bp-diastolic": diastolic},
    )
    found = evaluate(reading)
    assert found == ([] if expected is None else [("BLOOD_PRESSURE", expected, None)])


def test_sedation_and_psychotic_symptoms_are_urgent():
    found = evaluate(
        side_effects(
            T0 + timedelta(hours=4), **{"se-hard-to-stay-awake": True, "se-paranoia": True}
        )
    )
    assert sorted(found) == [("PSYCHOTIC_SYMPTOMS", "urgent", None), ("SEDATION", "urgent", None)]


@pytest.mark.parametrize(
    ("hours_after_end", "expected"),
    [
        (1, []),
        (4, [("PERSISTENT_DISSOCIATION", "routine", None)]),
        (14, [("PERSISTENT_DISSOCIATION", "high", None)]),
    ],
)
def test_dissociation_counts_only_once_it_persists(hours_after_end, expected):
    assert KETAMINE.end is not None
    at = KETAMINE.end + timedelta(hours=hours_after_end)
    assert evaluate(side_effects(at, **{"se-dissociation": 2})) == expected


def test_dissociation_after_n2o_is_not_a_ketamine_flag():
    assert (
        evaluate(side_effects(day(1), **{"se-dissociation": 2}), session=n2o_session("s1", T0))
        == []
    )
