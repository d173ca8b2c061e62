"""Suicide items (clinical-spec §5.3): every positive submission alerts at its tier; a skipped
item is re-asked once, then becomes a clinician task; nothing is merged away."""

from datetime import timedelta

import pytest

from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import load_parameters
from backend.domain.alerts.timeline import PatientTimeline
from tests.alerts.builders import T0, day, n2o_session, phq9, phq9_course, response, sum_scale

DEFAULTS = load_parameters()


def alerts_for(*responses, now=None):
    timeline = PatientTimeline(
        patient_id="p1", sessions=(n2o_session("s1", T0),), responses=tuple(responses)
    )
    return evaluate_alerts(timeline, DEFAULTS, now=now or day(30))


def suicidality(candidates):
    return [c for c in candidates if c.kind == "SUICIDALITY"]


@pytest.mark.parametrize(("item9", "tier"), [(1, "priority"), (2, "urgent"), (3, "urgent")])
def test_phq9_item_9_tiers(item9, tier):
    [alert] = suicidality(alerts_for(phq9("r1", day(1), 10, item9=item9)))
    assert alert.severity == tier
    assert alert.patient_action == "show_crisis_resources"
    assert alert.sla_minutes == DEFAULTS.sla_minutes[tier]
    assert [(a.link_id, a.value) for a in alert.evidence.answers] == [("phq9-9", item9)]


def test_phq9_item_9_zero_raises_nothing():
    assert suicidality(alerts_for(phq9("r1", day(1), 10))) == []


@pytest.mark.parametrize(
    ("value", "tier"), [(1, None), (2, "priority"), (3, "priority"), (4, "urgent"), (6, "urgent")]
)
def test_madrs_s_item_9_tiers(value, tier):
    r = sum_scale(
        "madrs-s", "madrs-s", "m1", day(1), 20, items=9, top=6, safety_item=9, safety_value=value
    )
    found = [a.severity for a in suicidality(alerts_for(r))]
    assert found == ([] if tier is None else [tier])


def test_qids_item_12_and_hamd_item_3_alert():
    qids = {f"qids-{n}": 1 for n in range(1, 17)} | {"qids-12": 2}
    hamd = {f"hamd17-{n}": 0 for n in range(1, 18)} | {"hamd17-3": 2}
    found = alerts_for(
        response("qids-sr16", "q1", day(1), qids), response("hamd17", "h1", day(2), hamd)
    )
    assert sorted((a.occurrence_key, a.severity) for a in suicidality(found)) == [
        ("p1:SUICIDALITY:h1", "priority"),
        ("p1:SUICIDALITY:q1", "urgent"),
    ]


def test_every_positive_submission_is_its_own_alert_never_merged():
    found = suicidality(
        alerts_for(phq9("r1", day(1), 10, item9=1), phq9("r2", day(1.5), 10, item9=1))
    )
    assert len(found) == 2
    assert len({a.dedup_key for a in found}) == 2
    assert not any(a.mergeable for a in found)


def test_suicide_alert_does_not_wait_for_the_trajectory():
    timeline = phq9_course(20, [(1, 8)])
    positive = phq9("d1.5", day(1.5), 9, item9=1)
    timeline = PatientTimeline(
        patient_id="p1", sessions=timeline.sessions, responses=(*timeline.responses, positive)
    )
    found = evaluate_alerts(timeline, DEFAULTS, now=day(1.5))
    assert [a.kind for a in found] == ["SUICIDALITY"]


def _skipped(response_id, authored, reask_of=None):
    answers = {f"phq9-{n}": 1 for n in range(1, 9)}
    return response("phq9", response_id, authored, answers, reask_of=reask_of)


def test_skipped_suicide_item_is_reasked_once_at_once():
    first = _skipped("r1", day(1))
    assert first.total is None  # never imputed or prorated (§5.3 rule 5)
    [reask] = alerts_for(first, now=day(1) + timedelta(minutes=5))
    assert (reask.kind, reask.audience, reask.patient_action) == (
        "SUICIDE_ITEM_REASK",
        "patient",
        "reask_suicide_item",
    )
    assert reask.sla_minutes is None


def test_reask_left_blank_raises_suicide_item_unanswered():
    found = alerts_for(
        _skipped("r1", day(1)),
        _skipped("r2", day(1) + timedelta(minutes=2), reask_of="r1"),
        now=day(1) + timedelta(minutes=3),
    )
    assert [(a.kind, a.severity, a.occurrence_key) for a in found] == [
        ("SUICIDE_ITEM_UNANSWERED", "priority", "p1:SUICIDE_ITEM_UNANSWERED:r2")
    ]


def test_no_reask_within_the_wait_counts_as_unanswered():
    wait = timedelta(minutes=DEFAULTS.suicidality.reask_wait_minutes)
    [task] = alerts_for(_skipped("r1", day(1)), now=day(1) + wait)
    assert task.kind == "SUICIDE_ITEM_UNANSWERED"
    assert task.triggered_at == day(1) + wait


def test_reask_answered_positive_alerts_and_closes_the_gap():
    answered = response(
        "phq9",
        "r2",
        day(1) + timedelta(minutes=2),
        {f"phq9-{n}": 1 for n in range(1, 10)},
        reask_of="r1",
    )
    found = alerts_for(_skipped("r1", day(1)), answered, now=day(2))
    assert [(a.kind, a.occurrence_key) for a in found] == [("SUICIDALITY", "p1:SUICIDALITY:r2")]
