"""Quiet hours in the patient's local time, and where a check-in may fire inside its window.

Quiet hours are defined on the wall clock (default 21:00-08:00, clinical-spec/issue 6): an instant
is quiet when its local time lies in [start, end). Daylight-saving changes make local time jump,
so the quiet periods are found from the instants where quietness can change: each local date's
start and end times (both folds of an ambiguous or missing time) and the zone's UTC-offset
transitions. Between two such instants quietness is constant.

Placement rule (`place_in_window`): fire at the nominal time if it is not quiet; else at the end of
the quiet period if that is still inside the window; else at the latest non-quiet minute of the
window; only when the whole window is quiet, at the nominal time, flagged as quiet (the
notifier delivers it silently).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec

LAST_MINUTE = timedelta(minutes=1)
"""Resolution of the "latest allowed time": one minute before quiet hours begin."""
_TRANSITION_SCAN = timedelta(hours=1)


class QuietHours(msgspec.Struct, frozen=True, kw_only=True):
    """Local wall-clock times; start == end means no quiet hours."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    during_quiet_hours: bool


def is_quiet(instant: datetime, zone: ZoneInfo, quiet: QuietHours) -> bool:
    local = instant.astimezone(zone)
    return quiet.contains(local.time().replace(tzinfo=None))


def place_in_window(
    nominal: datetime, opens: datetime, closes: datetime, zone: ZoneInfo, quiet: QuietHours
) -> Placement:
    """Where a check-in nominally due at `nominal` (inside [opens, closes)) fires, in UTC."""
    # Arithmetic on datetimes sharing a ZoneInfo is wall-clock arithmetic; elapsed time is UTC.
    nominal, opens, closes = (t.astimezone(UTC) for t in (nominal, opens, closes))
    if not is_quiet(nominal, zone, quiet):
        return Placement(at=nominal, during_quiet_hours=False)
    segments = _segments(opens, closes, zone, quiet)
    after = next((s for s, quiet_segment in segments if s > nominal and not quiet_segment), None)
    if after is not None:
        return Placement(at=after, during_quiet_hours=False)
    latest = _latest_allowed(segments, opens, closes)
    if latest is not None:
        return Placement(at=latest, during_quiet_hours=False)
    return Placement(at=nominal, during_quiet_hours=True)


def place_reminder(
    at: datetime, due: datetime, closes: datetime, zone: ZoneInfo, quiet: QuietHours
) -> datetime | None:
    """A reminder after the due time and before the window closes: one that would come after
    the close comes at the last minute before it (a reminder after expiry is useless), then moves
    out of quiet hours like a check-in. None when no such time exists: the reminder is dropped."""
    at, due, closes = (t.astimezone(UTC) for t in (at, due, closes))
    opens = due + LAST_MINUTE
    at = min(at, closes - LAST_MINUTE)
    if at < opens:
        return None
    placement = place_in_window(at, opens, closes, zone, quiet)
    return None if placement.during_quiet_hours else placement.at


def _latest_allowed(
    segments: list[tuple[datetime, bool]], opens: datetime, closes: datetime
) -> datetime | None:
    bounds = [s for s, _ in segments[1:]] + [closes]
    for (start, quiet_segment), end in reversed(list(zip(segments, bounds, strict=True))):
        if quiet_segment:
            continue
        latest = end - LAST_MINUTE
        if latest >= max(start, opens):
            return latest
    return None


def _segments(
    opens: datetime, closes: datetime, zone: ZoneInfo, quiet: QuietHours
) -> list[tuple[datetime, bool]]:
    """[opens, closes) cut where quietness may change: (segment start, quiet?) in order."""
    cuts = {opens}
    cuts.update(_wall_time_instants(opens, closes, zone, (quiet.start, quiet.end)))
    cuts.update(_offset_transitions(opens, closes, zone))
    ordered = sorted(c for c in cuts if opens <= c < closes)
    return [(c, is_quiet(c, zone, quiet)) for c in ordered]


def _wall_time_instants(
    opens: datetime, closes: datetime, zone: ZoneInfo, times: tuple[time, ...]
) -> set[datetime]:
    first: date = opens.astimezone(zone).date() - timedelta(days=1)
    last: date = closes.astimezone(zone).date() + timedelta(days=1)
    instants = set()
    day = first
    while day <= last:
        for wall in times:
            for fold in (0, 1):
                local = datetime.combine(day, wall, tzinfo=zone).replace(fold=fold)
                instants.add(local.astimezone(UTC))
        day += timedelta(days=1)
    return instants


def _offset_transitions(opens: datetime, closes: datetime, zone: ZoneInfo) -> set[datetime]:
    """Instants where the zone's UTC offset changes (DST), to the second, by an hourly scan."""
    found = set()
    left = opens
    while left < closes:
        right = min(left + _TRANSITION_SCAN, closes)
        if left.astimezone(zone).utcoffset() != right.astimezone(zone).utcoffset():
            found.add(_bisect_transition(left, right, zone))
        left = right
    return found


def _bisect_transition(left: datetime, right: datetime, zone: ZoneInfo) -> datetime:
    """The first whole second (UTC) in (left, right] with the new offset."""
    before = left.astimezone(zone).utcoffset()
    low, high = math.floor(left.timestamp()), math.ceil(right.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)
