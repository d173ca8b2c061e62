"""Golden ladders: the default protocols give exactly the time points of clinical-spec §4.2.

Expected due times are worked out by hand from the §4.2 tables (offset from the end of the
session, tolerance window in brackets) and the default quiet hours 21:00-08:00; reminders are
12 h after the due time (§4.2), kept inside the window and out of quiet hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from backend.domain.check_ins.planning import plan_check_ins
from backend.domain.check_ins.protocols import default_protocol
from tests.check_ins.builders import PARIS, by_step, local, patient, session


def paris(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return local(PARIS, 2025, month, day, hour, minute)


# An N2O session 13:00-14:00 Paris on Tuesday 3 June 2025 (summer time all through the ladder),
# the second session of a course that began on 27 May; PHQ-9 last answered 3 days before.
N2O_SESSION = session(
    id="s2", ends_at=paris(6, 3, 14), course_started_at=paris(5, 27, 13), first=False
)
N2O_PATIENT = patient(last_answered_at={"phq9": paris(5, 31, 10)})

# step: (due, window opens, window closes, instruments, reminders)
N2O_GOLDEN = {
    "pre-session": (paris(6, 2, 13), paris(6, 2, 13), paris(6, 3, 13),
                    ("madrs-s", "n2o-neuro"), [paris(6, 3, 8)]),
    "2h": (paris(6, 3, 16), paris(6, 3, 15, 30), paris(6, 3, 18),
           ("side-effects",), [paris(6, 3, 17, 59)]),
    "24h": (paris(6, 4, 14), paris(6, 4, 8), paris(6, 5, 2),
            ("madrs-s", "side-effects"), [paris(6, 4, 20, 59)]),
    "day-3": (paris(6, 6, 14), paris(6, 5, 14), paris(6, 7, 14), ("madrs-s",), [paris(6, 7, 8)]),
    "day-7": (paris(6, 10, 14), paris(6, 9, 14), paris(6, 12, 14),
              ("phq9", "madrs-s", "n2o-neuro"), [paris(6, 11, 8)]),
    "day-14": (paris(6, 17, 14), paris(6, 15, 14), paris(6, 19, 14),
               ("phq9", "n2o-neuro"), [paris(6, 18, 8)]),
    "mnsi-monthly#1": (paris(6, 24, 13), paris(6, 21, 13), paris(6, 27, 13),
                       ("mnsi-q",), [paris(6, 25, 8)]),
    **{
        f"weekly#{n}": (
            paris(6, 3, 14) + timedelta(days=day),
            paris(6, 3, 14) + timedelta(days=day - 2),
            paris(6, 3, 14) + timedelta(days=day + 2),
            ("phq9",),
            [paris(6, 4, 8) + timedelta(days=day)],
        )
        for n, day in enumerate(range(21, 57, 7), start=1)
    },
}  # fmt: skip


def test_n2o_session_at_14h_paris_gives_the_spec_ladder() -> None:
    plans = by_step(plan_check_ins(N2O_SESSION, default_protocol("n2o"), N2O_PATIENT))
    assert set(plans) == set(N2O_GOLDEN)
    for step, (due, opens, closes, instruments, reminders) in N2O_GOLDEN.items():
        plan = plans[step]
        assert (plan.due_at, plan.opens_at, plan.closes_at) == (due, opens, closes), step
        assert plan.instruments == instruments, step
        assert list(plan.reminders_at) == reminders, step
        assert plan.missed_flag_at == due + timedelta(hours=48), step
        assert plan.key == f"s2:{step}"
        assert not plan.during_quiet_hours
        assert plan.due_at.utcoffset() == timedelta(0)  # stored in UTC


def test_n2o_priorities_put_safety_checks_first() -> None:
    plans = by_step(plan_check_ins(N2O_SESSION, default_protocol("n2o"), N2O_PATIENT))
    assert {s for s, p in plans.items() if p.priority == "high"} == {"pre-session", "2h"}
    assert plans["weekly#1"].priority == "low"


def test_pre_session_asks_phq9_instead_of_madrs_s_when_the_last_phq9_is_a_week_old() -> None:
    stale = patient(last_answered_at={"phq9": paris(5, 26, 12)})  # 7 d 1 h before the check-in
    plans = by_step(plan_check_ins(N2O_SESSION, default_protocol("n2o"), stale))
    assert plans["pre-session"].instruments == ("phq9", "n2o-neuro")
    never = by_step(plan_check_ins(N2O_SESSION, default_protocol("n2o"), patient()))
    assert never["pre-session"].instruments == ("phq9", "n2o-neuro")


def test_first_session_baseline_and_pre_session_are_one_check_in() -> None:
    first = session(id="s1", ends_at=paris(5, 27, 14), first=True)
    plans = by_step(plan_check_ins(first, default_protocol("n2o"), patient()))
    baseline = plans["baseline"]
    # B0 may be up to 7 d before; the pre-session window (<= 24 h) is inside it, so the two
    # share that window and one form set, the six baseline instruments (§4.2).
    assert baseline.instruments == ("phq9", "gad7", "madrs-s", "mnsi-q", "n2o-neuro", "b12-risk")
    assert (baseline.opens_at, baseline.closes_at) == (paris(5, 26, 13), paris(5, 27, 13))
    assert baseline.due_at == paris(5, 26, 13)
    assert baseline.priority == "high"
    assert baseline.absorbed == ("s1:pre-session",)
    assert plans["pre-session"].merged_into == "s1:baseline"
    assert plans["pre-session"].instruments == ()
    assert plans["pre-session"].status == "merged"


def test_a_new_session_before_day_14_stops_day_14_and_the_weekly_phq9() -> None:
    next_start = paris(6, 13, 13)  # day 9.96: before day 14's window closes
    plans = by_step(
        plan_check_ins(
            session(id="s2", ends_at=paris(6, 3, 14), next_starts_at=next_start),
            default_protocol("n2o"),
            N2O_PATIENT,
        )
    )
    assert sorted(plans) == ["24h", "2h", "day-3", "day-7", "pre-session"]


def test_n2o_last_session_adds_three_monthly_mnsi_q_and_drops_course_months() -> None:
    last = session(id="s9", ends_at=paris(6, 3, 14), course_started_at=paris(5, 6, 13), last=True)
    plans = by_step(plan_check_ins(last, default_protocol("n2o"), N2O_PATIENT))
    assert [plans[f"mnsi-after-course#{n}"].due_at for n in (1, 2, 3)] == [
        paris(7, 1, 14),
        paris(7, 29, 14),
        paris(8, 26, 14),
    ]
    assert not any(step.startswith("mnsi-monthly") for step in plans)


def test_course_months_fall_to_the_session_whose_interval_holds_them() -> None:
    course = paris(5, 6, 13)
    before = session(id="a", ends_at=paris(5, 27, 14), course_started_at=course,
                     next_starts_at=paris(6, 10, 13))  # fmt: skip
    after = session(id="b", ends_at=paris(6, 10, 14), course_started_at=course)
    protocol = default_protocol("n2o")
    first_half = by_step(plan_check_ins(before, protocol, patient()))
    second_half = by_step(plan_check_ins(after, protocol, patient()))
    months = [(s, p.due_at) for s, p in (first_half | second_half).items() if "mnsi" in s]
    # Course days 28 and 56; with no later session known, the last one plans one month ahead.
    assert sorted(months) == [
        ("mnsi-monthly#1", paris(6, 3, 13)),
        ("mnsi-monthly#2", paris(7, 1, 13)),
    ]
    assert "mnsi-monthly#2" in second_half


IV_GOLDEN_EVERY_SESSION = {
    "pre-session": (
        paris(6, 2, 14, 20),
        ("madrs-s", "ketamine-bladder-misuse"),
    ),  # 24 h before start
    "4h": (paris(6, 3, 19), ("side-effects", "home-blood-pressure")),
    "24h": (paris(6, 4, 15), ("madrs-s",)),
    "day-2-3": (paris(6, 5, 15), ("madrs-s",)),
}


def test_iv_ketamine_infusion_ladder() -> None:
    infusion = session(id="k1", modality="iv_ketamine", ends_at=paris(6, 3, 15), minutes=40,
                       course_started_at=paris(5, 20, 14))  # fmt: skip
    plans = by_step(plan_check_ins(infusion, default_protocol("iv_ketamine"), patient()))
    # The course calendar's weekly cognition item (§5.2) due within a week of this infusion, no
    # later one being known: course day 21 (the course began on 20 May at 14:00).
    weekly = {"cognition-weekly#3": (paris(6, 10, 14), ("ketamine-cognition",))}
    assert {s: (p.due_at, p.instruments) for s, p in plans.items()} == (
        IV_GOLDEN_EVERY_SESSION | weekly
    )
    assert (plans["4h"].opens_at, plans["4h"].closes_at) == (paris(6, 3, 18), paris(6, 3, 21))


def test_iv_ketamine_day_2_3_is_skipped_when_the_next_infusion_falls_in_it() -> None:
    infusion = session(id="k1", modality="iv_ketamine", ends_at=paris(6, 3, 15), minutes=40,
                       next_starts_at=paris(6, 5, 14, 20))  # fmt: skip
    plans = by_step(plan_check_ins(infusion, default_protocol("iv_ketamine"), patient()))
    assert "day-2-3" not in plans


def test_iv_ketamine_follow_up_after_the_last_infusion() -> None:
    infusion = session(id="k6", modality="iv_ketamine", ends_at=paris(6, 3, 15), minutes=40,
                       course_started_at=paris(5, 20, 14), last=True)  # fmt: skip
    plans = plan_check_ins(infusion, default_protocol("iv_ketamine"), patient())
    asked = sorted(
        ((p.due_at - paris(6, 3, 15), p.instruments) for p in plans if p.merged_into is None),
        key=lambda x: x[0],
    )
    day = timedelta(days=1)
    # Days 1 and 3 repeat the every-session +24 h and day 2-3 MADRS-S, so they are merged with them.
    assert asked == [
        (-day - timedelta(minutes=40), ("madrs-s", "ketamine-bladder-misuse")),
        (timedelta(hours=4), ("side-effects", "home-blood-pressure")),
        (day, ("madrs-s",)),
        (2 * day, ("madrs-s",)),  # earliest due time inside both windows
        *[(d * day, ("phq9", "ketamine-cognition")) for d in (7, 14, 21, 28, 42, 56, 70, 84)],
    ]
    merged = by_step(plans)
    assert merged["follow-up-day-1"].merged_into == "k6:24h"
    assert merged["follow-up-day-3"].merged_into == "k6:day-2-3"
    assert (merged["day-2-3"].opens_at, merged["day-2-3"].closes_at) == (
        paris(6, 5, 15),  # follow-up day 3 opens at day 2
        paris(6, 6, 15) + timedelta(hours=12),  # day 2-3 closes at 84 h
    )


@pytest.mark.parametrize(
    ("week", "pre_dose", "has_24h"),
    [(1, "madrs-s", True), (4, "madrs-s", True), (5, "phq9", False), (12, "phq9", False)],
)
def test_esketamine_induction_and_maintenance(week: int, pre_dose: str, has_24h: bool) -> None:
    course_start = paris(6, 2, 10)
    ends = course_start + timedelta(weeks=week - 1, hours=2)
    dose = session(id="e1", modality="esketamine", ends_at=ends, minutes=120,
                   course_started_at=course_start)  # fmt: skip
    plans = by_step(plan_check_ins(dose, default_protocol("esketamine"), patient()))
    pre = plans.get("pre-dose") or plans["pre-dose-maintenance"]
    assert pre.instruments == (pre_dose, "ketamine-bladder-misuse")
    assert pre.due_at == course_start + timedelta(weeks=week - 1, hours=-24)
    assert plans["evening"].due_at == ends + timedelta(hours=4)
    assert plans["evening"].instruments == ("side-effects", "home-blood-pressure")
    assert ("24h" in plans) is has_24h
