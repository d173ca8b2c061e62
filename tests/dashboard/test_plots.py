"""The trajectory SVG: every layer present and labelled, nothing outside the canvas, no inline
style (the CSP forbids it), text escaped, and the nadir/baseline rules."""

import itertools
import re
from datetime import UTC, date, datetime, timedelta
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from backend.dashboard.plots import (
    HEIGHT,
    WIDTH,
    Band,
    EventMark,
    ScoreMark,
    Trajectory,
    _day_ticks,
    _scale,
    describe,
    nadir_after,
    trajectory_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
PHQ9_BANDS = (
    Band("Minimal", 0, 4),
    Band("Mild", 5, 9),
    Band("Moderate", 10, 14),
    Band("Moderately severe", 15, 19),
    Band("Severe", 20, 27),
)


def _course() -> Trajectory:
    scores = tuple(
        ScoreMark(at=T0 + timedelta(days=d), total=t, prorated=d == 7)
        for d, t in ((-1, 21), (1, 9), (3, 7), (7, 12), (14, 18))
    )
    return Trajectory(
        title="PHQ-9 <2 weeks> & more",
        scores=scores,
        y_min=0,
        y_max=27,
        bands=PHQ9_BANDS,
        sessions=(EventMark(at=T0, label="IV ketamine session"),),
        alerts=(EventMark(at=T0 + timedelta(days=14), label="Rebound confirmed"),),
        baseline=scores[0],
        nadir=nadir_after(scores, T0),
        element_id="plot-phq9",
    )


def _classes(root: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [e for e in root.iter() if e.get("class") == name]


def test_every_layer_is_drawn_and_labelled() -> None:
    root = ElementTree.fromstring(trajectory_svg(_course()))
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "plot-phq9-title plot-phq9-desc"
    assert len(_classes(root, "band")) == 5
    assert len(_classes(root, "session")) == 1
    assert len(_classes(root, "score")) == 5
    assert len(_classes(root, "baseline")) == 1
    assert len(_classes(root, "nadir")) == 1
    assert len(_classes(root, "alert")) == 1
    hollow = [c for c in _classes(root, "score") if c.get("fill") == "#ffffff"]
    assert len(hollow) == 1  # the prorated total is hollow, not just another colour
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "Nadir 7" in titles
    assert "Baseline 21" in titles
    assert any(t and t.startswith("Alert: Rebound confirmed") for t in titles)


def test_no_inline_style_or_script_and_text_is_escaped() -> None:
    svg = trajectory_svg(_course())
    assert "style=" not in svg
    assert "<script" not in svg
    assert "PHQ-9 &lt;2 weeks&gt; &amp; more" in svg
    ElementTree.fromstring(svg)  # well-formed


def test_band_shading_darkens_with_severity() -> None:
    root = ElementTree.fromstring(trajectory_svg(_course()))
    opacities = [float(g[0].get("fill-opacity", "0")) for g in _classes(root, "band")]
    assert opacities == sorted(opacities)
    assert len(set(opacities)) == 5


def test_higher_scores_are_drawn_higher() -> None:
    root = ElementTree.fromstring(trajectory_svg(_course()))
    by_score = {
        int(re.match(r"Score (\d+)", c[0].text or "").group(1)): float(c.get("cy", "0"))  # type: ignore[union-attr]
        for c in _classes(root, "score")
    }
    ordered = [by_score[k] for k in sorted(by_score)]
    assert ordered == sorted(ordered, reverse=True)  # SVG y grows downwards


def test_an_empty_plot_says_so() -> None:
    empty = Trajectory(title="GAD-7", scores=(), y_min=0, y_max=21)
    svg = trajectory_svg(empty)
    assert "No scores yet" in svg
    assert describe(empty) == "GAD-7: no scores yet."


def test_nadir_is_the_lowest_score_after_the_first_session() -> None:
    scores = (
        ScoreMark(at=T0 - timedelta(days=2), total=3),  # before the session: not a nadir
        ScoreMark(at=T0 + timedelta(days=1), total=8),
        ScoreMark(at=T0 + timedelta(days=3), total=6),
        ScoreMark(at=T0 + timedelta(days=5), total=6),
    )
    assert nadir_after(scores, T0) == scores[2]  # the earliest of a tie
    assert nadir_after(scores, None) is None
    assert nadir_after(scores, T0 + timedelta(days=30)) is None


def test_an_incomplete_score_is_hollow_labelled_and_never_the_nadir() -> None:
    """As for the rules (§2.4), a prorated total or one with items missing (a domain-maxima
    total, §1.4) never sets the nadir; the plot draws both hollow and says which."""
    scores = (
        ScoreMark(at=T0 + timedelta(days=1), total=8),
        ScoreMark(at=T0 + timedelta(days=3), total=4, prorated=True),
        ScoreMark(at=T0 + timedelta(days=5), total=5, partial=True),
    )
    assert nadir_after(scores, T0) == scores[0]
    assert [m.qualifier for m in scores] == ["", " (prorated)", " (items missing)"]
    trajectory = Trajectory(
        title="QIDS-SR16",
        scores=scores,
        y_min=0,
        y_max=27,
        nadir=nadir_after(scores, T0),
        element_id="plot-qids",
    )
    root = ElementTree.fromstring(trajectory_svg(trajectory))
    hollow = [c for c in _classes(root, "score") if c.get("fill") == "#ffffff"]
    assert len(hollow) == 2
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any(t.startswith("Score 5 (items missing)") for t in titles)
    assert "Nadir 8" in titles


def test_the_description_summarises_the_course() -> None:
    text = describe(_course())
    assert "5 score(s)" in text
    assert "first 21, latest 18" in text
    assert "baseline 21" in text
    assert "nadir 7" in text
    assert "1 treatment session(s)" in text
    assert "1 alert(s)" in text


@given(
    st.lists(
        st.tuples(st.floats(min_value=-30, max_value=120), st.integers(min_value=0, max_value=27)),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.floats(min_value=-30, max_value=120), max_size=6),
)
def test_every_mark_lies_on_the_canvas(
    points: list[tuple[float, int]], sessions: list[float]
) -> None:
    scores = tuple(ScoreMark(at=T0 + timedelta(days=d), total=t) for d, t in points)
    trajectory = Trajectory(
        title="PHQ-9",
        scores=scores,
        y_min=0,
        y_max=27,
        bands=PHQ9_BANDS,
        sessions=tuple(EventMark(at=T0 + timedelta(days=d), label="s") for d in sessions),
        nadir=nadir_after(scores, T0),
    )
    svg = trajectory_svg(trajectory)
    ElementTree.fromstring(svg)
    for attribute in re.finditer(r'(cx|x1|x2)="(-?[\d.]+)"', svg):
        assert 0 <= float(attribute.group(2)) <= WIDTH
    for attribute in re.finditer(r'(cy|y1|y2)="(-?[\d.]+)"', svg):
        assert 0 <= float(attribute.group(2)) <= HEIGHT


ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham", "Australia/Lord_Howe")


def test_times_and_days_are_the_clinic_s_and_named() -> None:
    """A clinic in New York reads its own times (EST) and days: a score at 03:00 UTC on 2 March
    is the evening of 1 March there."""
    new_york = ZoneInfo("America/New_York")
    late = ScoreMark(at=datetime(2026, 3, 2, 3, tzinfo=UTC), total=9)
    trajectory = Trajectory(title="PHQ-9", scores=(late,), y_min=0, y_max=27)
    svg = trajectory_svg(trajectory, new_york)
    root = ElementTree.fromstring(svg)
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert "Score 9, 01 Mar 2026 22:00 EST" in titles
    assert "UTC" not in svg
    assert "01 Mar 2026 22:00 EST" in describe(trajectory, new_york)
    # The default stays UTC, named.
    assert "02 Mar 2026 03:00 UTC" in describe(trajectory)


@given(
    st.floats(min_value=-400, max_value=400),
    st.floats(min_value=0, max_value=200),
    st.sampled_from(ZONES),
)
def test_day_ticks_are_the_zone_s_midnights_inside_the_plot(
    start_days: float, span_days: float, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    first = T0 + timedelta(days=start_days)
    scores = (
        ScoreMark(at=first, total=1),
        ScoreMark(at=first + timedelta(days=span_days), total=2),
    )
    trajectory = Trajectory(title="PHQ-9", scores=scores, y_min=0, y_max=27)
    scale = _scale(trajectory)
    ticks = _day_ticks(scale, zone)
    assert ticks, "a plot spans at least two days, so it shows at least one"
    assert len(ticks) <= 9
    for tick in ticks:
        assert scale.start <= tick.timestamp() <= scale.end
        local = tick.astimezone(zone)
        # Midnight (01:00 on the rare day a zone skips its midnight).
        assert (local.hour, local.minute) in {(0, 0), (1, 0)}
        assert local.date() == tick.date()
    steps = {(b.date() - a.date()).days for a, b in itertools.pairwise(ticks)}
    assert len(steps) <= 1
    # Steps land on the same calendar days whatever the range (days since 1970-01-01).
    for step in steps:
        assert all((t.date() - date(1970, 1, 1)).days % step == 0 for t in ticks)
