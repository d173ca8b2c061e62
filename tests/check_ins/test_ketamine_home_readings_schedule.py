"""When the ketamine and esketamine protocols ask the patient's own §5.2 items: the home blood
pressure reading on every dosing day once the patient is home (beside the hypertensive-symptom
items), "new memory or concentration problems over weeks" every 7 days of the course and at every
follow-up after the last infusion."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from backend.domain.check_ins.planning import plan_check_ins
from backend.domain.check_ins.protocols import Modality, default_protocol
from tests.check_ins.builders import PARIS, by_step, local, patient, session

HOME_BP = "home-blood-pressure"
COGNITION = "ketamine-cognition"
POST_DISCHARGE: dict[Modality, str] = {"iv_ketamine": "4h", "esketamine": "evening"}


def paris(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return local(PARIS, 2025, month, day, hour, minute)


COURSE_START = paris(6, 2, 10)


def dosing_days(weeks: int, per_week: int) -> list[datetime]:
    """Session end times: `per_week` sessions a week (Monday, then every other day), 2 h each."""
    return [
        COURSE_START + timedelta(weeks=w, days=2 * k, hours=2)
        for w in range(weeks)
        for k in range(per_week)
    ]


def plans_of_course(modality: Modality, ends: list[datetime]) -> list[tuple[str, datetime]]:
    """(step, due) of every check-in the course's sessions plan, each knowing the next one."""
    planned = []
    for n, end in enumerate(ends):
        following = ends[n + 1] - timedelta(hours=2) if n + 1 < len(ends) else None
        dose = session(id=f"s{n}", modality=modality, ends_at=end, minutes=120,
                       course_started_at=COURSE_START, first=n == 0,
                       next_starts_at=following)  # fmt: skip
        plans = plan_check_ins(dose, default_protocol(modality), patient())
        planned += [(p.step, p.due_at) for p in plans if COGNITION in p.instruments]
    return planned


@pytest.mark.parametrize("modality", ["iv_ketamine", "esketamine"])
@pytest.mark.parametrize("week", [1, 4, 5, 12])
def test_every_dosing_day_asks_for_a_home_reading_once_the_patient_is_home(
    modality: Modality, week: int
) -> None:
    end = COURSE_START + timedelta(weeks=week - 1, hours=2)
    dose = session(id="s1", modality=modality, ends_at=end, minutes=120,
                   course_started_at=COURSE_START)  # fmt: skip
    plans = by_step(plan_check_ins(dose, default_protocol(modality), patient()))
    with_reading = [step for step, plan in plans.items() if HOME_BP in plan.instruments]
    assert with_reading == [POST_DISCHARGE[modality]]
    step = plans[POST_DISCHARGE[modality]]
    # Beside the hypertensive-symptom items, at the post-discharge safety check (§4.2).
    assert step.instruments == ("side-effects", HOME_BP)
    assert step.priority == "high"
    assert end + timedelta(hours=3) <= step.opens_at <= step.due_at < step.closes_at
    assert step.closes_at <= end + timedelta(hours=6)


@pytest.mark.parametrize(("modality", "per_week"), [("iv_ketamine", 3), ("esketamine", 2)])
def test_cognition_is_asked_every_seven_days_of_a_course_and_never_twice(
    modality: Modality, per_week: int
) -> None:
    # Four weeks and one session in week 5, not (yet) known to be the last: it plans the
    # course calendar's occurrences up to a week after it, so day 35 too.
    ends = [*dosing_days(4, per_week), COURSE_START + timedelta(weeks=4, hours=2)]
    asked = plans_of_course(modality, ends)
    assert [due for _, due in asked] == [
        COURSE_START + timedelta(days=d) for d in (7, 14, 21, 28, 35)
    ]
    assert len({step for step, _ in asked}) == len(asked)


def test_after_the_last_infusion_every_follow_up_asks_for_cognition() -> None:
    end = paris(6, 20, 12)
    last = session(id="s9", modality="iv_ketamine", ends_at=end, minutes=40,
                   course_started_at=COURSE_START, last=True)  # fmt: skip
    plans = plan_check_ins(last, default_protocol("iv_ketamine"), patient())
    asked = [(p.due_at - end).days for p in plans if COGNITION in p.instruments]
    assert asked == [7, 14, 21, 28, 42, 56, 70, 84]


def test_n2o_asks_neither_ketamine_item() -> None:
    protocol = default_protocol("n2o")
    asked = {i for _, steps in protocol.sections() for step in steps for i in step.instruments}
    assert not asked & {HOME_BP, COGNITION}
