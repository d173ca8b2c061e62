"""A synthetic cohort with known truth (clinical-spec §3.6), for measuring the rebound rule.

Each patient has one IV ketamine session (0.5 mg/kg) at day 0 and is measured on the PHQ-9:

    S(t) = B0 - G * h(t) + u + e,   h rises linearly to 1 at t_peak = 24 h, then decays with
                                     half-life tau (rebounders) or stays (durable responders);
    B0 ~ Normal(20, 4); u ~ Normal(0, 2) (random intercept); e ~ Normal(0, SEM = 2.5);
    rounded and clipped to 0..24 (the builder answers item 9 with 0, leaving 8 items x 3).

Classes (suggested mix, §3.6): 35 % non-responders (gain < 25 % of B0), 40 % responders who
rebound (gain ~ Normal(55 %, 15 %) clipped to 30-90 %, tau ~ Uniform(2, 4) days), 25 % durable
responders (same gain, no decay within the 28-day window). Truth: a rebounder's true rebound is at
t_peak + tau, when half of the gain is lost (the rule's `min_fraction` = 0.5 reading of rebound).

Check-ins at days 1, 3, 7, 14, 21, 28 (the §4.2 post-infusion ladder), each jittered inside its
tolerance window and each missed with probability `p_missed` (then a MissedCheckIn is recorded).
The baseline PHQ-9 is taken a day before the session. Seeded: the same seed gives the same cohort.

Caveat: a PHQ-9 with a 2-week recall cannot show a 24-hour effect (§1.0); the simulation uses the
PHQ-9 scale because §2.4's parameters and §3.6's noise model are given for it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from backend.domain.alerts.timeline import MissedCheckIn, PatientTimeline, TreatmentSession
from tests.alerts.builders import T0, day, phq9

TrajectoryClass = Literal["non_responder", "rebounder", "durable"]

CLASS_MIX: tuple[tuple[TrajectoryClass, float], ...] = (
    ("non_responder", 0.35),
    ("rebounder", 0.40),
    ("durable", 0.25),
)
CHECK_INS = ((1, 0.75, 1.5), (3, 2, 4), (7, 6, 9), (14, 12, 16), (21, 19, 23), (28, 26, 30))
"""(nominal day, earliest, latest)."""
SEM = 2.5
T_PEAK_DAYS = 1.0


@dataclass(frozen=True)
class SimulatedPatient:
    timeline: PatientTimeline
    trajectory_class: TrajectoryClass
    true_rebound_at: datetime | None
    gain: float


def _effect(days_after: float, tau: float | None) -> float:
    if days_after <= 0:
        return 0.0
    if days_after < T_PEAK_DAYS:
        return days_after / T_PEAK_DAYS
    if tau is None:
        return 1.0
    return math.exp(-math.log(2) * (days_after - T_PEAK_DAYS) / tau)


def simulate_patient(rng: random.Random, index: int, *, p_missed: float) -> SimulatedPatient:
    draw = rng.random()
    cumulative = 0.0
    trajectory_class: TrajectoryClass = CLASS_MIX[-1][0]
    for name, share in CLASS_MIX:
        cumulative += share
        if draw < cumulative:
            trajectory_class = name
            break
    b0 = min(27.0, max(10.0, rng.gauss(20, 4)))
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

    patient_id = f"sim{index}"
    session = TreatmentSession(
        id=f"{patient_id}-s1", modality="ketamine_iv", start=T0, end=T0 + timedelta(minutes=40)
    )
    responses = [phq9(f"{patient_id}-b0", day(-1), observe(-1))]
    missed = []
    for nominal, earliest, latest in CHECK_INS:
        if rng.random() < p_missed:
            missed.append(
                MissedCheckIn(
                    id=f"{patient_id}-c{nominal}", due=day(earliest), session_id=session.id
                )
            )
            continue
        at = rng.uniform(earliest, latest)
        responses.append(phq9(f"{patient_id}-d{nominal}", day(at), observe(at)))
    true_rebound = None
    if trajectory_class == "rebounder":
        assert tau is not None
        true_rebound = day(T_PEAK_DAYS + tau)
    return SimulatedPatient(
        timeline=PatientTimeline(
            patient_id=patient_id,
            sessions=(session,),
            responses=tuple(responses),
            missed_check_ins=tuple(missed),
        ),
        trajectory_class=trajectory_class,
        true_rebound_at=true_rebound,
        gain=gain,
    )


def simulate_cohort(size: int, *, seed: int, p_missed: float = 0.15) -> list[SimulatedPatient]:
    rng = random.Random(seed)
    return [simulate_patient(rng, index, p_missed=p_missed) for index in range(size)]
