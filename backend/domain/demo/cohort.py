"""Synthetic PHQ-9 courses with known shape (clinical-spec §3.6), for the demo clinic.

The model is the one the alert rules are measured on (``tests/alerts/cohort.py``): one session at
day 0, S(t) = B0 - G * h(t) + u + e, with h rising linearly to 1 at 24 h and then decaying with
half-life tau (rebounders) or staying (durable responders); non-responders gain < 20 % of B0.
Here each course is returned as days and totals (not rule timelines), so the demo can submit real
answers through the responses service. Seeded: the same seed gives the same clinic.
"""

import math
import random
from dataclasses import dataclass
from typing import Final, Literal

from questionnaires.answers import Answer

TrajectoryClass = Literal["non_responder", "rebounder", "durable"]

CLASS_MIX: Final[tuple[tuple[TrajectoryClass, float], ...]] = (
    ("non_responder", 0.35),
    ("rebounder", 0.40),
    ("durable", 0.25),
)
CHECK_IN_DAYS: Final = ((1, 0.75, 1.5), (3, 2, 4), (7, 6, 9), (14, 12, 16), (21, 19, 23))
"""(nominal day, earliest, latest) of the §4.2 post-infusion ladder."""
SEM: Final = 2.5
T_PEAK_DAYS: Final = 1.0
PHQ9_SCORED_ITEMS: Final = 9


@dataclass(frozen=True, slots=True)
class SimulatedCourse:
    trajectory_class: TrajectoryClass
    baseline: int
    observations: tuple[tuple[float, int], ...]
    """(days after the session, PHQ-9 total) for the check-ins answered, in order."""
    missed_days: tuple[int, ...]
    """Nominal days of the check-ins left unanswered."""


def _effect(days_after: float, tau: float | None) -> float:
    if days_after <= 0:
        return 0.0
    if days_after < T_PEAK_DAYS:
        return days_after / T_PEAK_DAYS
    if tau is None:
        return 1.0
    return math.exp(-math.log(2) * (days_after - T_PEAK_DAYS) / tau)


def simulate_course(rng: random.Random, *, p_missed: float, days_so_far: float) -> SimulatedCourse:
    """One course whose check-ins up to ``days_so_far`` after the session have happened."""
    draw, cumulative = rng.random(), 0.0
    trajectory_class: TrajectoryClass = CLASS_MIX[-1][0]
    for name, share in CLASS_MIX:
        cumulative += share
        if draw < cumulative:
            trajectory_class = name
            break
    b0 = min(26.0, max(12.0, rng.gauss(20, 4)))
    intercept = rng.gauss(0, 2)
    tau: float | None
    if trajectory_class == "non_responder":
        gain_fraction, tau = rng.uniform(0.0, 0.2), 3.0
    else:
        gain_fraction = min(0.9, max(0.3, rng.gauss(0.55, 0.15)))
        tau = rng.uniform(2, 4) if trajectory_class == "rebounder" else None
    gain = gain_fraction * b0

    def observe(days_after: float) -> int:
        value = b0 - gain * _effect(days_after, tau) + intercept + rng.gauss(0, SEM)
        return min(24, max(0, round(value)))

    observations: list[tuple[float, int]] = [(-1.0, observe(-1))]
    missed: list[int] = []
    for nominal, earliest, latest in CHECK_IN_DAYS:
        if earliest > days_so_far:
            break
        if rng.random() < p_missed:
            missed.append(nominal)
            continue
        at = min(rng.uniform(earliest, latest), days_so_far)
        observations.append((at, observe(at)))
    return SimulatedCourse(
        trajectory_class=trajectory_class,
        baseline=observations[0][1],
        observations=tuple(observations),
        missed_days=tuple(missed),
    )


def simulate_demo_cohort(
    size: int, *, seed: int, p_missed: float = 0.15, days_so_far: float = 21.0
) -> list[SimulatedCourse]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
    return [simulate_course(rng, p_missed=p_missed, days_so_far=days_so_far) for _ in range(size)]


def phq9_answers(total: int, *, item9: int = 0) -> tuple[Answer, ...]:
    """PHQ-9 answers summing to ``total`` (0-27): spread evenly over items 1-8, item 9 as given,
    item 10 (difficulty, unscored) answered 1."""
    remaining = max(0, min(27, total) - item9)
    values = [0] * (PHQ9_SCORED_ITEMS - 1)
    for index in range(remaining):
        slot = index % len(values)
        if values[slot] < 3:
            values[slot] += 1
    answers = [Answer(link_id=f"phq9-{n + 1}", value=v) for n, v in enumerate(values)]
    answers.append(Answer(link_id="phq9-9", value=item9))
    answers.append(Answer(link_id="phq9-10", value=1))
    return tuple(answers)
