"""Score trajectories as server-side SVG: one plot per instrument, with its text alternative.

Why our own small module: the plot must be static SVG (no script, so the strict CSP holds and the
page works with JavaScript off), carry clinic-specific layers (severity bands, treatment sessions,
baseline, nadir, pinned alerts), and be readable without colour. The maintained client-side
libraries we looked at (uPlot, Chart.js) draw on a canvas, which screen readers cannot read, and no
SVG charting package is among the project's dependencies. What we need is a few straight lines.

Readability for colour-blind users: colours come from the Okabe-Ito palette (Okabe & Ito 2008,
"Color Universal Design"), and every layer is also told apart by shape or dash pattern: scores are
circles joined by a solid line (hollow when incomplete: prorated or items missing), sessions
dashed vertical lines with a triangle, the baseline a dotted line, the nadir a diamond, alerts
squares. Bands are shaded by increasing darkness and labelled in text. Styling uses presentation
attributes, never ``style``, because the Content-Security-Policy forbids inline styles.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Final
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

# Okabe-Ito colours.
BLUE: Final = "#0072B2"
BLUISH_GREEN: Final = "#009E73"
ORANGE: Final = "#E69F00"
VERMILLION: Final = "#D55E00"
REDDISH_PURPLE: Final = "#CC79A7"
BLACK: Final = "#000000"

WIDTH: Final = 720
HEIGHT: Final = 300
MARGIN_LEFT: Final = 44
MARGIN_RIGHT: Final = 170  # room for the band labels
MARGIN_TOP: Final = 28  # the alert lane
MARGIN_BOTTOM: Final = 36
UTC_ZONE: Final = ZoneInfo("UTC")
_EPOCH_DAY: Final = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class ScoreMark:
    at: datetime
    total: int
    prorated: bool = False
    partial: bool = False
    """Some scored item left unanswered, prorated or not (as `ScoredResponse.partial`)."""

    @property
    def complete(self) -> bool:
        """Every scored item answered: the only scores the rules' nadir is taken from (§2.4)."""
        return not self.prorated and not self.partial

    @property
    def qualifier(self) -> str:
        if self.prorated:
            return " (prorated)"
        return " (items missing)" if self.partial else ""


@dataclass(frozen=True, slots=True)
class Band:
    label: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class EventMark:
    """A treatment session or an alert, placed at a time."""

    at: datetime
    label: str


@dataclass(frozen=True, slots=True)
class Trajectory:
    title: str
    scores: tuple[ScoreMark, ...]
    y_min: int
    y_max: int
    bands: tuple[Band, ...] = ()
    sessions: tuple[EventMark, ...] = ()
    alerts: tuple[EventMark, ...] = ()
    baseline: ScoreMark | None = None
    nadir: ScoreMark | None = None
    element_id: str = "trajectory"


@dataclass(frozen=True, slots=True)
class _Scale:
    start: float
    end: float
    y_min: int
    y_max: int
    plot_width: float = field(default=WIDTH - MARGIN_LEFT - MARGIN_RIGHT)
    plot_height: float = field(default=HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)

    def x(self, at: datetime) -> float:
        span = self.end - self.start
        return MARGIN_LEFT + (at.timestamp() - self.start) / span * self.plot_width

    def y(self, value: float) -> float:
        span = self.y_max - self.y_min
        return MARGIN_TOP + (self.y_max - value) / span * self.plot_height


def _num(value: float) -> str:
    return f"{value:.1f}"


def _scale(trajectory: Trajectory) -> _Scale:
    times = [m.at.timestamp() for m in trajectory.scores]
    times += [m.at.timestamp() for m in trajectory.sessions]
    times += [m.at.timestamp() for m in trajectory.alerts]
    if not times:
        times = [0.0]
    start, end = min(times), max(times)
    # A day either side, so a mark never sits on the axis.
    pad = max((end - start) * 0.04, 86_400.0)
    y_max = trajectory.y_max if trajectory.y_max > trajectory.y_min else trajectory.y_min + 1
    return _Scale(start=start - pad, end=end + pad, y_min=trajectory.y_min, y_max=y_max)


def _day_ticks(scale: _Scale, zone: ZoneInfo) -> list[datetime]:
    """Midnights in ``zone`` (the clinic's days), every ``step`` days, across the plot."""
    days = (scale.end - scale.start) / 86_400
    step_days = next((s for s in (1, 2, 7, 14, 28, 56, 91) if days / s <= 8), 182)
    day = datetime.fromtimestamp(scale.start, zone).date()
    # Steps fall on the same calendar days whatever the plot's range (days since 1970-01-01).
    day += timedelta(days=-(day - _EPOCH_DAY).days % step_days)
    ticks: list[datetime] = []
    while True:
        midnight = datetime.combine(day, time(0), tzinfo=zone)
        if midnight.timestamp() > scale.end:
            return ticks
        if midnight.timestamp() >= scale.start:
            ticks.append(midnight)
        day += timedelta(days=step_days)


def _y_ticks(y_min: int, y_max: int) -> list[int]:
    span = y_max - y_min
    step = next((s for s in (1, 2, 5, 10, 20) if span / s <= 6), 50)
    return list(range(y_min - y_min % step + (step if y_min % step else 0), y_max + 1, step))


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def clock_face(at: datetime, zone: ZoneInfo) -> str:
    """A stored instant as the clinic reads it: in the clinic's zone, always named, since a bare
    time read in the wrong zone moves a session or a check-in by hours."""
    local = at.astimezone(zone)
    return f"{local.strftime('%d %b %Y %H:%M')} {local.tzname() or zone.key}"


def trajectory_svg(trajectory: Trajectory, zone: ZoneInfo = UTC_ZONE) -> str:
    """The plot as an ``<svg>`` element, labelled for assistive technology; the page shows the
    same data as a table next to it (``trajectory_rows``). Days and times are ``zone``'s (the
    clinic's)."""

    def _when(at: datetime) -> str:
        return clock_face(at, zone)

    scale = _scale(trajectory)
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    ident = trajectory.element_id
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="trajectory" role="img" id={quoteattr(ident)} '
        f'aria-labelledby="{ident}-title {ident}-desc">',
        f'<title id="{ident}-title">{escape(trajectory.title)}</title>',
        f'<desc id="{ident}-desc">{escape(describe(trajectory, zone))}</desc>',
    ]
    # Severity bands: darker for more severe, each labelled at the right edge.
    for index, band in enumerate(sorted(trajectory.bands, key=lambda b: b.low)):
        low = max(band.low, scale.y_min)
        high = min(band.high + 1, scale.y_max) if band.high < scale.y_max else scale.y_max
        if high <= low:
            continue
        y_top, y_bottom = scale.y(high), scale.y(low)
        opacity = 0.04 + 0.05 * index
        parts.append(
            f'<g class="band"><rect x="{left}" y="{_num(y_top)}" width="{right - left}" '
            f'height="{_num(y_bottom - y_top)}" fill="{VERMILLION}" fill-opacity="{opacity:.2f}"/>'
            f'<text x="{right + 6}" y="{_num((y_top + y_bottom) / 2 + 4)}" font-size="11" '
            f'fill="{BLACK}">{escape(band.label)} ({band.low}\N{EN DASH}{band.high})</text></g>'
        )
    # Axes and ticks.
    parts.append(
        f'<g class="axes" stroke="{BLACK}" stroke-width="1">'
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/></g>'
    )
    for value in _y_ticks(scale.y_min, scale.y_max):
        tick_y = _num(scale.y(value))
        parts.append(
            f'<g class="tick"><line x1="{left - 4}" y1="{tick_y}" x2="{left}" y2="{tick_y}" '
            f'stroke="{BLACK}"/><text x="{left - 7}" y="{tick_y}" dy="4" font-size="11" '
            f'text-anchor="end" fill="{BLACK}">{value}</text></g>'
        )
    for at in _day_ticks(scale, zone):
        tick_x = _num(scale.x(at))
        parts.append(
            f'<g class="tick"><line x1="{tick_x}" y1="{bottom}" x2="{tick_x}" y2="{bottom + 4}" '
            f'stroke="{BLACK}"/><text x="{tick_x}" y="{bottom + 16}" font-size="11" '
            f'text-anchor="middle" fill="{BLACK}">{at.strftime("%d %b")}</text></g>'
        )
    # Treatment sessions: dashed verticals with a triangle at the top.
    for session in trajectory.sessions:
        x = scale.x(session.at)
        parts.append(
            f'<g class="session">{_title(f"{session.label}, {_when(session.at)}")}'
            f'<line x1="{_num(x)}" y1="{top}" x2="{_num(x)}" y2="{bottom}" '
            f'stroke="{BLUISH_GREEN}" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<path d="M{_num(x - 6)} {top} L{_num(x + 6)} {top} L{_num(x)} {top + 9} Z" '
            f'fill="{BLUISH_GREEN}"/></g>'
        )
    if trajectory.baseline is not None:
        baseline_y = _num(scale.y(trajectory.baseline.total))
        parts.append(
            f'<g class="baseline">{_title(f"Baseline {trajectory.baseline.total}")}'
            f'<line x1="{left}" y1="{baseline_y}" x2="{right}" y2="{baseline_y}" stroke="{BLACK}" '
            f'stroke-width="1.5" stroke-dasharray="2 3"/>'
            f'<text x="{left + 4}" y="{baseline_y}" dy="-4" font-size="11" fill="{BLACK}">'
            f"baseline {trajectory.baseline.total}</text></g>"
        )
    # The scores: a solid line through circles; incomplete totals (prorated, items missing) hollow.
    ordered = sorted(trajectory.scores, key=lambda m: m.at)
    if len(ordered) > 1:
        points = " ".join(f"{_num(scale.x(m.at))},{_num(scale.y(m.total))}" for m in ordered)
        parts.append(
            f'<polyline class="score-line" points="{points}" fill="none" stroke="{BLUE}" '
            f'stroke-width="2"/>'
        )
    for mark in ordered:
        label = f"{mark.total}{mark.qualifier}, {_when(mark.at)}"
        parts.append(
            f'<circle class="score" cx="{_num(scale.x(mark.at))}" cy="{_num(scale.y(mark.total))}"'
            f' r="4.5" fill="{BLUE if mark.complete else "#ffffff"}" stroke="{BLUE}" '
            f'stroke-width="2">{_title(f"Score {label}")}</circle>'
        )
    if trajectory.nadir is not None:
        x, y = scale.x(trajectory.nadir.at), scale.y(trajectory.nadir.total)
        parts.append(
            f'<g class="nadir">{_title(f"Nadir {trajectory.nadir.total}")}'
            f'<path d="M{_num(x)} {_num(y - 9)} L{_num(x + 7)} {_num(y)} L{_num(x)} {_num(y + 9)} '
            f'L{_num(x - 7)} {_num(y)} Z" fill="none" stroke="{ORANGE}" stroke-width="2.5"/>'
            f'<text x="{_num(x)}" y="{_num(y + 22)}" font-size="11" text-anchor="middle" '
            f'fill="{BLACK}">nadir</text></g>'
        )
    # Alerts pinned in a lane above the plot where they fired.
    for alert in trajectory.alerts:
        x = scale.x(alert.at)
        parts.append(
            f'<g class="alert">{_title(f"Alert: {alert.label}, {_when(alert.at)}")}'
            f'<rect x="{_num(x - 6)}" y="4" width="12" height="12" fill="{REDDISH_PURPLE}" '
            f'stroke="{BLACK}"/><text x="{_num(x)}" y="14" font-size="10" text-anchor="middle" '
            f'fill="{BLACK}">!</text></g>'
        )
    if not ordered:
        parts.append(
            f'<text x="{(left + right) / 2}" y="{(top + bottom) / 2}" text-anchor="middle" '
            f'font-size="13" fill="{BLACK}">No scores yet</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def describe(trajectory: Trajectory, zone: ZoneInfo = UTC_ZONE) -> str:
    """One sentence summarising the plot (its ``<desc>``; the table gives every value)."""

    def _when(at: datetime) -> str:
        return clock_face(at, zone)

    ordered = sorted(trajectory.scores, key=lambda m: m.at)
    if not ordered:
        return f"{trajectory.title}: no scores yet."
    first, last = ordered[0], ordered[-1]
    parts = [
        f"{trajectory.title}: {len(ordered)} score(s) from {_when(first.at)} to {_when(last.at)}",
        f"first {first.total}, latest {last.total}",
    ]
    if trajectory.baseline is not None:
        parts.append(f"baseline {trajectory.baseline.total}")
    if trajectory.nadir is not None:
        parts.append(f"nadir {trajectory.nadir.total} on {_when(trajectory.nadir.at)}")
    parts.append(f"{len(trajectory.sessions)} treatment session(s)")
    parts.append(f"{len(trajectory.alerts)} alert(s)")
    return "; ".join(parts) + "."


def nadir_after(scores: tuple[ScoreMark, ...], start: datetime | None) -> ScoreMark | None:
    """The lowest complete score at or after ``start`` (the first session); the earliest if
    tied. As for the rules, an incomplete score never sets the nadir (§2.4)."""
    if start is None:
        return None
    after = [m for m in scores if m.at >= start and m.complete]
    if not after:
        return None
    return min(after, key=lambda m: (m.total, m.at))
