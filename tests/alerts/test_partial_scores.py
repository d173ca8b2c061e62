"""Partially missing domain-maxima scores (clinical-spec §1.4, §2.4 data-quality rules).

QIDS-SR16 scores a multi-item domain from its answered items, so a response with an item left
out still has a total and is not prorated. §2.4: "prorated or partially missing scores may create
a CANDIDATE but never CONFIRMED/FULL_RETURN alone". Each course below is run twice, once with
every item answered and once with one item of the sleep domain left out of one score at the
same total, so the difference is the missing item alone.
"""

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.domain.alerts.candidate import AlertCandidate, Evidence
from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import (
    build_parameters,
    load_parameters,
    read_document,
)
from backend.domain.alerts.timeline import (
    CourseBaseline,
    PatientTimeline,
    ScoredResponse,
    course_baseline,
)
from tests.alerts.builders import (
    QIDS_DOMAINS,
    T0,
    day,
    n2o_session,
    phq9,
    qids,
    qids_course,
    rebound_events,
    response,
)

DEFAULTS = load_parameters()
NOW = day(60)
QIDS_RULE = DEFAULTS.rebound["qids-sr16-7d"]

MAY_BE_PARTIAL = {"REBOUND_CANDIDATE", "SEVERE_SCORE"}
"""What a partially missing score may trigger on its own (§2.4; SEVERE_SCORE is independent of
the trajectory, as for prorated scores)."""


# --- What a partially missing score is ----------------------------------------------------------


def test_a_domain_maxima_score_with_an_item_missing_is_partial_and_not_complete() -> None:
    full = qids("full", day(1), 9)
    partial = qids("partial", day(1), 9, partial=True)
    assert (partial.total, partial.prorated) == (9, False)  # scored, and not prorated
    assert (full.partial, full.complete) == (False, True)
    assert (partial.partial, partial.complete) == (True, False)


def test_a_prorated_sum_score_is_partial_too() -> None:
    prorated = phq9("p", day(1), 12, prorated=True)
    assert prorated.prorated
    assert prorated.partial
    assert not prorated.complete
    assert not phq9("c", day(1), 12).partial


def test_a_missing_single_item_domain_leaves_no_total() -> None:
    # §1.4: a missing single-item domain makes the total null, so there is nothing to compare;
    # item 12 is one (it is scored as well as a safety item).
    answers = {f"qids-{n}": 1 for n in range(1, 17) if n != 12}
    skipped = response("qids-sr16", "q", day(1), answers)
    assert skipped.total is None
    assert not skipped.complete


# --- The rebound rule, QIDS-SR16 B0 = 15 (eligible gain >= 0.25 x 15, candidate rise >= half) ----


def test_a_partial_score_may_be_a_candidate_but_never_confirms() -> None:
    scores: list[tuple[float, int] | tuple[float, int, bool]] = [(1, 5), (3, 10), (6, 10)]
    assert rebound_events(qids_course(15, scores)) == {
        ("REBOUND_CANDIDATE", "d3"),
        ("REBOUND_CONFIRMED", "d6"),
        ("LOSS_OF_RESPONSE", "d6"),
    }
    partial = qids_course(15, [(1, 5), (3, 10), (6, 10, True)])
    assert rebound_events(partial) == {("REBOUND_CANDIDATE", "d3"), ("REBOUND_CANDIDATE", "d6")}


def test_a_partial_score_never_raises_full_return_alone() -> None:
    assert rebound_events(qids_course(15, [(1, 5), (4, 14)])) == {
        ("REBOUND_CANDIDATE", "d4"),
        ("FULL_RETURN", "d4"),
    }
    assert rebound_events(qids_course(15, [(1, 5), (4, 14, True)])) == {("REBOUND_CANDIDATE", "d4")}


def test_a_partial_score_never_sets_the_nadir() -> None:
    assert rebound_events(qids_course(15, [(1, 13), (2, 3), (7, 13)])) == {
        ("REBOUND_CANDIDATE", "d7"),
        ("FULL_RETURN", "d7"),
    }
    # Without the partial day-2 score the nadir is 13: a gain of 2, not eligible, and the first
    # complete score from day 7 reports the non-response.
    assert rebound_events(qids_course(15, [(1, 13), (2, 3, True), (7, 13)])) == {
        ("NON_RESPONSE_SESSION", "s1")
    }


def test_a_partial_score_is_never_one_of_a_relapse_or_loss_of_response_pair() -> None:
    assert rebound_events(qids_course(15, [(1, 4), (8, 12), (15, 12)])) == {
        ("REBOUND_CANDIDATE", "d8"),
        ("REBOUND_CONFIRMED", "d15"),
        ("RELAPSE_LIKE", "d15"),
        ("LOSS_OF_RESPONSE", "d15"),
    }
    assert rebound_events(qids_course(15, [(1, 4), (8, 12), (15, 12, True)])) == {
        ("REBOUND_CANDIDATE", "d8"),
        ("REBOUND_CANDIDATE", "d15"),
    }


def test_a_partial_score_is_never_the_remission_or_response_a_pair_follows() -> None:
    # Day 1 would be remission (<= 5) and response (<= 7.5); partial, it is neither, and the
    # day-8 score becomes the nadir (gain 3 < 3.75: not eligible).
    assert rebound_events(qids_course(15, [(1, 4, True), (8, 12), (15, 12)])) == {
        ("NON_RESPONSE_SESSION", "s1")
    }


def test_a_partial_score_is_never_the_course_baseline() -> None:
    complete = qids("early", day(-3), 15)
    partial = qids("late", day(-1), 18, partial=True)
    timeline = PatientTimeline(
        patient_id="p1", sessions=(n2o_session("s1", T0),), responses=(complete, partial)
    )
    b0 = course_baseline(timeline, "qids-sr16-7d", within_days=QIDS_RULE.baseline_within_days)
    assert b0 is not None
    assert (b0.response_id, b0.total) == ("early", 15)
    only_partial = PatientTimeline(
        patient_id="p1", sessions=(n2o_session("s1", T0),), responses=(partial,)
    )
    assert course_baseline(only_partial, "qids-sr16-7d", within_days=7) is None


def test_a_partial_score_is_never_the_per_session_reference() -> None:
    override = {
        "parameterSet": "clinic",
        "version": "1",
        "rebound": {"defaults": {"reference": "per_session"}},
    }
    per_session = build_parameters(read_document("default"), (override,))
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=(n2o_session("s1", T0),),
        responses=(
            qids("b0", day(-1), 15),
            qids("pre", day(-0.5), 24, partial=True),
            qids("d1", day(1), 5),
            qids("d4", day(4), 14),
        ),
    )
    # B_1 is the complete day -1 score (15), not the partial 24 twelve hours later: the gain is
    # 10, so 14 is a candidate and a full return; against 24 it would be neither.
    assert rebound_events(timeline, per_session) == {
        ("REBOUND_CANDIDATE", "d4"),
        ("FULL_RETURN", "d4"),
    }


def test_a_partial_course_baseline_gives_no_reference() -> None:
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=(n2o_session("s1", T0),),
        responses=(
            qids("b0", day(-1), 15, partial=True),
            qids("d1", day(1), 5),
            qids("d4", day(4), 14),
        ),
    )
    # No complete B0: nothing to measure a gain against, so no trajectory alert at all.
    assert rebound_events(timeline) == set()


# --- The evidence says which totals were partial ---------------------------------------------


def test_the_evidence_marks_a_partial_score_and_a_complete_one() -> None:
    found = evaluate_alerts(qids_course(15, [(1, 5), (3, 10), (6, 10, True)]), DEFAULTS, now=NOW)
    marks = {
        (c.kind, s.response_id, s.role): s.partial
        for c in found
        for s in c.evidence.scores
        if c.kind == "REBOUND_CANDIDATE"
    }
    # The day-6 candidate rests on a partial total; its nadir and B0 are complete.
    assert marks[("REBOUND_CANDIDATE", "d6", "score")] is True
    assert marks[("REBOUND_CANDIDATE", "d3", "score")] is False
    assert {v for (_, r, _), v in marks.items() if r in {"d1", "b0"}} == {False}


def test_the_evidence_marks_a_partial_recorded_baseline() -> None:
    # Only a B0 recorded before partial scores were refused can be partial: the reviewer sees it.
    timeline = qids_course(15, [(1, 5), (4, 14)])
    recorded = PatientTimeline(
        patient_id="p1",
        sessions=timeline.sessions,
        responses=timeline.responses,
        baselines=(
            CourseBaseline(
                trajectory_key="qids-sr16-7d",
                response_id="b0",
                total=15,
                authored=day(-1),
                partial=True,
            ),
        ),
    )
    references = [
        s.partial
        for c in evaluate_alerts(recorded, DEFAULTS, now=NOW)
        for s in c.evidence.scores
        if s.role == "reference"
    ]
    assert references
    assert set(references) == {True}


def test_evidence_recorded_before_the_partial_mark_reads_as_not_known() -> None:
    stored = msgspec.json.encode(
        {
            "scores": [
                {
                    "response_id": "r1",
                    "role": "score",
                    "trajectory_key": "qids-sr16-7d",
                    "authored": "2026-01-01T00:00:00Z",
                    "total": 10,
                    "prorated": False,
                }
            ]
        }
    )
    assert msgspec.json.decode(stored, type=Evidence).scores[0].partial is None


# --- Property: a partially missing score counts for nothing beyond a candidate ------------------

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MULTI_ITEM_DOMAINS = [domain for domain in QIDS_DOMAINS if len(domain) > 1]


@st.composite
def qids_answer_sets(draw: st.DrawFn) -> dict[str, int]:
    # A level per response spreads totals over the whole range (uniform items would cluster
    # near the top, since a domain takes the maximum of up to four items).
    level = draw(st.integers(0, 3))
    answers = {f"qids-{n}": draw(st.integers(0, level)) for n in range(1, 17) if n != 12}
    return answers | {"qids-12": 0}


@st.composite
def courses_with_one_item_removed(
    draw: st.DrawFn,
) -> tuple[PatientTimeline, PatientTimeline, str]:
    """(the course with one response's item removed, the course without that response, its id).
    The response keeps at least one answered item in the domain, so it still has a total."""
    sessions = [n2o_session("s0", T0)]
    if draw(st.booleans()):
        sessions.append(n2o_session("s1", day(draw(st.sampled_from([7, 14, 21])))))
    times = sorted(draw(st.lists(st.floats(0.1, 40), min_size=2, max_size=8, unique=True)))
    answer_sets = [("b0", day(-1), draw(qids_answer_sets()))] + [
        (f"r{i}", day(t), draw(qids_answer_sets())) for i, t in enumerate(times)
    ]
    index = draw(st.integers(0, len(answer_sets) - 1))
    domain = draw(st.sampled_from(MULTI_ITEM_DOMAINS))
    removed = f"qids-{draw(st.sampled_from(domain))}"
    responses: list[ScoredResponse] = []
    for i, (response_id, authored, answers) in enumerate(answer_sets):
        if i == index:
            answers = {k: v for k, v in answers.items() if k != removed}
        responses.append(response("qids-sr16", response_id, authored, answers))
    changed = responses[index]
    assert changed.total is not None
    assert not changed.prorated
    with_partial = PatientTimeline(
        patient_id="p1", sessions=tuple(sessions), responses=tuple(responses)
    )
    without = PatientTimeline(
        patient_id="p1",
        sessions=tuple(sessions),
        responses=tuple(r for r in responses if r.id != changed.id),
    )
    return with_partial, without, changed.id


def _triggered_by(candidate: AlertCandidate, response_id: str) -> bool:
    return candidate.occurrence_key.endswith(f":{response_id}")


@SETTINGS
@given(courses_with_one_item_removed())
def test_a_partial_score_changes_nothing_but_its_own_candidate_or_severe_alert(
    case: tuple[PatientTimeline, PatientTimeline, str],
) -> None:
    with_partial, without, changed = case
    found = evaluate_alerts(with_partial, DEFAULTS, now=NOW)
    # The partial score itself raises at most a candidate (or a severe score, any trajectory).
    assert {c.kind for c in found if _triggered_by(c, changed)} <= MAY_BE_PARTIAL
    # It is never evidence other than the triggering score: not a reference, nadir, previous,
    # response or remission.
    assert not [
        (c.kind, s.role)
        for c in found
        for s in c.evidence.scores
        if s.response_id == changed and s.role != "score"
    ]
    # Every other alert is exactly what the course would raise without that response at all, so
    # leaving an item out can never turn a non-confirming course into a confirming one.
    others = [c for c in found if not _triggered_by(c, changed)]
    assert others == evaluate_alerts(without, DEFAULTS, now=NOW)


def test_the_property_holds_on_a_course_that_confirms_only_through_the_partial_score() -> None:
    # The example the property exists for: a rebound confirmed only by the partial score.
    complete = qids_course(15, [(1, 5), (3, 10), (6, 10)])
    partial = qids_course(15, [(1, 5), (3, 10), (6, 10, True)])
    without = PatientTimeline(
        patient_id="p1", sessions=partial.sessions, responses=partial.responses[:-1]
    )
    confirming = {"REBOUND_CONFIRMED", "FULL_RETURN", "LOSS_OF_RESPONSE", "RELAPSE_LIKE"}
    assert {c.kind for c in evaluate_alerts(complete, DEFAULTS, now=NOW)} & confirming
    found = evaluate_alerts(partial, DEFAULTS, now=NOW)
    assert not {c.kind for c in found} & confirming
    assert [c for c in found if not _triggered_by(c, "d6")] == evaluate_alerts(
        without, DEFAULTS, now=NOW
    )
