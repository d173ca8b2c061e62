"""Nitrous-oxide exposure accounting for the B12-deficiency safety rule (clinical-spec §5.1).

The Entonox SmPC says N2O "should not be used for more than a total of 24 hours, or more
frequently than every 4 days, without close clinical supervision and haematological monitoring".
The backend tracks cumulative inhalation per rolling 28 days and the shortest interval between
sessions, and a "haematological monitoring due" task follows when either limit is met. The
limits are data (`n2o-exposure.json`); the alert engine turns triggers into tasks.

Hours count inhalation time, not concentration-weighted: the SmPC limit is stated in hours.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Literal

import msgspec

from backend.domain.check_ins.plans import PlanningError


class ExposureThresholds(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    source: str
    cumulative_inhalation_limit: timedelta
    rolling_window: timedelta
    minimum_interval: timedelta


class N2OSession(msgspec.Struct, frozen=True, kw_only=True):
    """One session's inhalation: from `inhalation_started_at`, for `inhalation`."""

    session_id: str
    inhalation_started_at: datetime
    inhalation: timedelta

    @property
    def inhalation_ended_at(self) -> datetime:
        return self.inhalation_started_at + self.inhalation


TriggerKind = Literal["cumulative_inhalation", "short_interval"]


class ExposureTrigger(msgspec.Struct, frozen=True, kw_only=True):
    """A limit first met by `session_id` ("haematological monitoring due")."""

    kind: TriggerKind
    session_id: str
    value: timedelta
    """Cumulative inhalation in the window ending with that session, or the interval before it."""


class N2OExposure(msgspec.Struct, frozen=True, kw_only=True):
    as_of: datetime
    cumulative_inhalation: timedelta
    """In the rolling window ending at `as_of`."""
    peak_cumulative_inhalation: timedelta
    """Highest rolling-window total over all the sessions given (planned ones included)."""
    shortest_interval: timedelta | None
    triggers: tuple[ExposureTrigger, ...]

    @property
    def haematological_monitoring_due(self) -> bool:
        return bool(self.triggers)


def decode_thresholds(data: bytes, source: str) -> ExposureThresholds:
    try:
        thresholds = msgspec.json.decode(data, type=ExposureThresholds)
    except msgspec.DecodeError as exc:
        raise PlanningError(f"{source}: {exc}") from exc
    durations = (
        thresholds.cumulative_inhalation_limit,
        thresholds.rolling_window,
        thresholds.minimum_interval,
    )
    if any(d <= timedelta(0) for d in durations):
        raise PlanningError(f"{source}: exposure limits must be positive")
    return thresholds


@functools.cache
def shipped_thresholds() -> ExposureThresholds:
    data = resources.files("backend.domain.check_ins").joinpath("n2o-exposure.json").read_bytes()
    return decode_thresholds(data, "n2o-exposure.json")


def cumulative_inhalation(
    sessions: Iterable[N2OSession], window_end: datetime, window: timedelta
) -> timedelta:
    """Inhalation time inside (window_end - window, window_end]; a session cut by the window
    edge counts only its part inside."""
    window_start = window_end - window
    total = timedelta(0)
    for session in sessions:
        start = max(session.inhalation_started_at, window_start)
        end = min(session.inhalation_ended_at, window_end)
        total += max(end - start, timedelta(0))
    return total


def shortest_interval(sessions: Iterable[N2OSession]) -> timedelta | None:
    """Shortest time between the starts of consecutive sessions; None for fewer than two."""
    starts = sorted(s.inhalation_started_at for s in sessions)
    return min((b - a for a, b in itertools.pairwise(starts)), default=None)


def exposure_triggers(
    sessions: Sequence[N2OSession], thresholds: ExposureThresholds
) -> list[ExposureTrigger]:
    """The first session meeting each limit (at most one trigger per kind)."""
    ordered = _ordered(sessions)
    triggers = []
    # The rolling total only grows while someone inhales, so it first reaches the limit at the
    # end of some session's inhalation: check those instants in time order.
    for session in sorted(ordered, key=lambda s: (s.inhalation_ended_at, s.session_id)):
        total = cumulative_inhalation(
            ordered, session.inhalation_ended_at, thresholds.rolling_window
        )
        if total >= thresholds.cumulative_inhalation_limit:
            triggers.append(
                ExposureTrigger(
                    kind="cumulative_inhalation", session_id=session.session_id, value=total
                )
            )
            break
    for earlier, later in itertools.pairwise(ordered):
        interval = later.inhalation_started_at - earlier.inhalation_started_at
        if interval < thresholds.minimum_interval:
            triggers.append(
                ExposureTrigger(kind="short_interval", session_id=later.session_id, value=interval)
            )
            break
    return triggers


def n2o_exposure(
    sessions: Sequence[N2OSession], as_of: datetime, thresholds: ExposureThresholds | None = None
) -> N2OExposure:
    """The patient's exposure summary as of `as_of`, for the alert engine and the dashboard."""
    limits = thresholds or shipped_thresholds()
    ordered = _ordered(sessions)
    peak = max(
        (
            cumulative_inhalation(ordered, s.inhalation_ended_at, limits.rolling_window)
            for s in ordered
        ),
        default=timedelta(0),
    )
    return N2OExposure(
        as_of=as_of,
        cumulative_inhalation=cumulative_inhalation(ordered, as_of, limits.rolling_window),
        peak_cumulative_inhalation=peak,
        shortest_interval=shortest_interval(ordered),
        triggers=tuple(exposure_triggers(ordered, limits)),
    )


def _ordered(sessions: Iterable[N2OSession]) -> list[N2OSession]:
    ordered = sorted(sessions, key=lambda s: (s.inhalation_started_at, s.session_id))
    if any(s.inhalation_started_at.utcoffset() is None for s in ordered):
        raise PlanningError("exposure needs time-zone-aware datetimes")
    if any(s.inhalation < timedelta(0) for s in ordered):
        raise PlanningError("inhalation time cannot be negative")
    if len({s.session_id for s in ordered}) != len(ordered):
        raise PlanningError("a session is counted twice")
    return ordered
