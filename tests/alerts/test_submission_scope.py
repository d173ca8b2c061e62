"""A submission's scoped timeline (`history.patient_timeline(submitted=...)`) against the whole
history, over generated histories (hypothesis): whenever `scope_is_exact` accepts the scope, the
rules find the same triggers for the submission, and nothing the whole history would not find.

The scope is built here as the SQL in `history._submission_rows` builds it: the course (from
`course_lookback` before its first session), the submission, the responses to its instrument
just before it (one; more are tried too), and no late arrival (a response to the instrument
authored after it).
"""

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.history import (
    _b12_risk_factors,
    _Decrypted,
    _scored,
    course_lookback,
    scope_is_exact,
)
from backend.domain.alerts.parameters import load_parameters
from backend.domain.alerts.timeline import PatientTimeline, TreatmentSession
from questionnaires.answers import Answer, AnswerValue, Submission
from questionnaires.registry import get_instrument, score_submission
from tests.alerts.builders import T0, n2o_session

DEFAULTS = load_parameters()
WAIT = timedelta(minutes=DEFAULTS.suicidality.reask_wait_minutes)


def _decrypted(
    response_id: str, instrument_id: str, minutes: int, values: list[int], *, blank: bool
) -> _Decrypted:
    instrument = get_instrument(instrument_id)
    answers: dict[str, AnswerValue] = {
        f"{instrument_id}-{n}": v for n, v in enumerate(values, start=1)
    }
    if blank:
        answers.pop(f"{instrument_id}-9", None)  # the suicide item left blank
    score = score_submission(
        Submission(
            instrument_id=instrument.id,
            instrument_version=instrument.version,
            answers=tuple(Answer(link_id=k, value=v) for k, v in answers.items()),
        )
    )
    return _Decrypted(
        id=response_id,
        authored=T0 + timedelta(minutes=minutes),
        score=score,
        answers=dict(answers),
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[_Decrypted], tuple[TreatmentSession, ...]]:
    count = draw(st.integers(1, 30))
    blank_odds = draw(st.sampled_from([0, 1, 2, 5]))  # one in n phq9 leaves item 9 blank
    # Minutes from T0, clustered so that re-ask waits (60 min) link some of them.
    steps = draw(
        st.lists(st.sampled_from([1, 20, 50, 70, 300, 1440, 4320]), min_size=count, max_size=count)
    )
    start = draw(st.integers(-20 * 1440, 0))
    responses = []
    minutes = start
    for index, step in enumerate(steps):
        minutes += step
        instrument = draw(st.sampled_from(["phq9", "phq9", "gad7"]))
        items = 9 if instrument == "phq9" else 7
        values = draw(st.lists(st.integers(0, 3), min_size=items, max_size=items))
        blank = instrument == "phq9" and blank_odds > 0 and draw(st.integers(1, blank_odds)) == 1
        responses.append(_decrypted(f"r{index:03d}", instrument, minutes, values, blank=blank))
    session_days = draw(st.lists(st.integers(-10, 20), max_size=3, unique=True))
    sessions = tuple(
        n2o_session(f"s{i}", T0 + timedelta(days=d)) for i, d in enumerate(sorted(session_days))
    )
    return responses, sessions


def _timeline(
    responses: list[_Decrypted], sessions: tuple[TreatmentSession, ...]
) -> PatientTimeline:
    return PatientTimeline(
        patient_id="p1",
        sessions=sessions,
        responses=tuple(_scored(responses, WAIT)),
        b12_risk_factors=_b12_risk_factors(responses),
    )


def _scope(
    responses: list[_Decrypted],
    submitted: _Decrypted,
    sessions: tuple[TreatmentSession, ...],
    limit: int = 1,
) -> list[_Decrypted] | None:
    """What `_submission_rows` reads; None where it reads the whole history (a late arrival)."""
    key = (submitted.authored, submitted.id)
    instrument = submitted.score.instrument_id
    same = [r for r in responses if r.score.instrument_id == instrument and r.id != submitted.id]
    if any((r.authored, r.id) > key for r in same):
        return None
    chosen = {submitted.id: submitted}
    if sessions:
        since = min(s.start for s in sessions) - course_lookback(DEFAULTS)
        chosen.update({r.id: r for r in responses if r.authored >= since})
    before = sorted((r for r in same if (r.authored, r.id) < key), key=lambda r: (r.authored, r.id))
    chosen.update({r.id: r for r in before[-limit:]})
    return sorted(chosen.values(), key=lambda r: (r.authored, r.id))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    histories(),
    st.integers(0, 29),
    st.sampled_from([0, 30, 90, 600, 100_000]),
    # The service reads one answer before the submission; reading more changes nothing (a
    # blank one among them sends it to the whole history), which the larger reads check.
    st.sampled_from([1, 2, 8]),
)
def test_an_accepted_scope_finds_what_the_whole_history_finds(history, pick, later_minutes, limit):
    responses, sessions = history
    # Mostly the latest answer to an instrument (the common case), sometimes a late arrival.
    latest = list({r.score.instrument_id: r for r in responses}.values())
    pool = latest if pick % 4 else responses
    submitted = pool[pick % len(pool)]
    scope = _scope(responses, submitted, sessions, limit)
    if scope is None or not scope_is_exact(scope, submitted.id):
        return  # the whole history is read
    now = max(r.authored for r in responses) + timedelta(minutes=later_minutes)
    full = evaluate_alerts(_timeline(responses, sessions), DEFAULTS, now=now)
    scoped = evaluate_alerts(_timeline(scope, sessions), DEFAULTS, now=now)
    # Nothing the whole history would not raise (no spurious re-ask, no different evidence)...
    assert set(map(repr, scoped)) <= set(map(repr, full))
    # ...and everything the submission raises or takes part in.
    involving = [c for c in full if submitted.id in repr(c)]
    assert set(map(repr, involving)) <= set(map(repr, scoped))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_scope_with_a_blank_suicide_item_before_the_submission_reads_everything(history):
    responses, _ = history
    blank = [r for r in responses if r.score.unanswered_safety_items]
    others = [r for r in responses if r not in blank]
    if not blank or not others:
        return
    assert not scope_is_exact([blank[0], others[-1]], others[-1].id)
    assert scope_is_exact([others[-1]], others[-1].id)
