"""A timeline may leave out the answers of responses whose instrument no rule reads item by item
(`engine.reads_answers`): `alerts.history` then reads a long course without decrypting them.

Proved here for every instrument of the catalogue that `reads_answers` lets go, with generated
answers, in a course of each modality: the rules give exactly the same candidates with the
answers as without. A rule that starts reading such an instrument's answers fails this test
until `reads_answers` names it."""

from datetime import timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from backend.domain.alerts.engine import evaluate_alerts, reads_answers
from backend.domain.alerts.parameters import AlertParameters, load_parameters
from backend.domain.alerts.timeline import (
    PatientTimeline,
    ScoredResponse,
    TreatmentSession,
    scored_response,
)
from questionnaires.answers import Answer, AnswerValue, Submission
from questionnaires.errors import AnswerValidationError
from questionnaires.model import Instrument
from questionnaires.registry import catalogue
from tests.alerts.builders import T0, day, item_values, n2o_session, phq9

PARAMETER_SETS = {
    "default": load_parameters(),
    "conservative": load_parameters("conservative-rebound"),
}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _unread(parameters: AlertParameters) -> list[Instrument]:
    return [i for i in catalogue().instruments() if not reads_answers(i, parameters)]


@st.composite
def _answers(draw: st.DrawFn, instrument: Instrument) -> dict[str, AnswerValue]:
    answers: dict[str, AnswerValue] = {}
    for item in instrument.items:
        # Mostly answered, sometimes not: prorated and unanswered safety items come out too.
        if draw(st.integers(0, 9)) > 0:
            answers[item.link_id] = draw(item_values(item, st.text(min_size=1, max_size=40)))
    return answers


def _scored(
    instrument: Instrument, answers: dict[str, AnswerValue], hours: float
) -> ScoredResponse | None:
    submission = Submission(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        answers=tuple(Answer(link_id=k, value=v) for k, v in answers.items()),
    )
    try:
        score = catalogue().score(submission)
    except AnswerValidationError:
        return None  # answers the API would refuse (e.g. an item its condition disables)
    return scored_response(
        score,
        instrument,
        response_id="probe",
        authored=T0 + timedelta(hours=hours),
        answers=dict(answers),
    )


def _session(modality: str) -> TreatmentSession:
    if modality == "n2o":
        return n2o_session("s1", T0)
    return TreatmentSession(id="s1", modality=modality, start=T0, end=T0 + timedelta(minutes=40))  # type: ignore[arg-type]


def _timeline(modality: str, probe: ScoredResponse) -> PatientTimeline:
    """A course with a baseline and post-session PHQ-9 scores around the probe response."""
    return PatientTimeline(
        patient_id="p1",
        sessions=(_session(modality), _session_after(modality)),
        responses=(
            phq9("b0", day(-1), 18),
            phq9("d1", day(1), 6),
            phq9("d3", day(3), 9, item9=1),
            phq9("d6", day(6), 16),
            probe,
        ),
        b12_risk_factors=("b12-vegan",),
    )


def _session_after(modality: str) -> TreatmentSession:
    first = _session(modality)
    return msgspec.structs.replace(first, id="s2", start=day(7), end=day(7) + timedelta(hours=1))


@pytest.mark.parametrize("parameter_set", sorted(PARAMETER_SETS))
@pytest.mark.parametrize("modality", ["n2o", "ketamine_iv", "esketamine"])
@SETTINGS
@given(data=st.data(), hours=st.floats(-40, 24 * 12))
def test_rules_ignore_the_answers_of_instruments_they_do_not_read(
    parameter_set: str, modality: str, data: st.DataObject, hours: float
) -> None:
    parameters = PARAMETER_SETS[parameter_set]
    instrument = data.draw(st.sampled_from(_unread(parameters)), label="instrument")
    probe = _scored(instrument, data.draw(_answers(instrument), label="answers"), hours)
    assume(probe is not None)
    assert probe is not None
    without = msgspec.structs.replace(probe, answers={}, free_text=())
    now = day(30)
    assert evaluate_alerts(_timeline(modality, probe), parameters, now=now) == evaluate_alerts(
        _timeline(modality, without), parameters, now=now
    )


def test_the_instruments_whose_answers_rules_read_are_named() -> None:
    """The ones this test would otherwise miss: their answers do change what rules raise."""
    parameters = PARAMETER_SETS["default"]
    read = {i.id for i in catalogue().instruments() if reads_answers(i, parameters)}
    assert read == {"n2o-neuro", "side-effects", "home-blood-pressure", "ketamine-cognition"}
    # Stripped of its answers, a persistent dissociation the day after ketamine goes unseen.
    side_effects = catalogue().get("side-effects")
    item = parameters.ketamine.dissociation_item
    top = max(o.value for o in next(i for i in side_effects.items if i.link_id == item).options)
    probe = _scored(side_effects, {item: top}, hours=30)
    assert probe is not None
    without = msgspec.structs.replace(probe, answers={}, free_text=())
    now = day(30)
    kinds = {c.kind for c in evaluate_alerts(_timeline("ketamine_iv", probe), parameters, now=now)}
    assert "PERSISTENT_DISSOCIATION" in kinds
    stripped = evaluate_alerts(_timeline("ketamine_iv", without), parameters, now=now)
    assert "PERSISTENT_DISSOCIATION" not in {c.kind for c in stripped}
