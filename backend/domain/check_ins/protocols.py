"""Check-in protocols as versioned data: what to ask, when, and for how long, per modality.

The shipped defaults (`protocols/*.json`) transcribe clinical-spec §4.2; every value there is a
[P] proposal awaiting clinical sign-off, so none of it is a constant in code. A file is decoded by
msgspec (shape, unknown keys refused) and then checked for meaning (instruments exist and are
patient-facing, windows contain their due offset, offsets sorted...), so a typo stops the service
at start-up instead of mis-timing a patient's check-ins.

Durations in the files are ISO 8601 (`"PT2H"`, `"P7D"`, `"-PT24H"`).

Clinic overrides (`ProtocolOverride`) are documents too. Rules, applied in this order:
1. `remove` deletes steps by id (from any section);
2. each step under `steps` replaces the base step with the same id wholesale (it must stay in the
   same section), or is added to its section when the id is new;
3. `defaults`, when given, replaces the base defaults wholesale;
4. the result takes the override's id and version, is re-sorted by offset and re-checked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from datetime import timedelta
from importlib import resources
from typing import Literal

import msgspec

from questionnaires.errors import UnknownInstrumentError
from questionnaires.registry import get_instrument

Modality = Literal["n2o", "iv_ketamine", "esketamine"]
MODALITIES: tuple[Modality, ...] = ("n2o", "iv_ketamine", "esketamine")

Priority = Literal["low", "normal", "high"]
"""How much a check-in matters when there is a backlog: side-effect safety checks are high."""
PRIORITY_RANK: dict[Priority, int] = {"low": 0, "normal": 1, "high": 2}

Anchor = Literal["session_start", "session_end", "course_start"]
"""What an offset counts from. Pre-session and baseline count back from the session start;
the post-session ladder counts from its end (clinical-spec §3: effects are timed from the end of
inhalation or infusion); course-anchored steps repeat on the course calendar (monthly MNSI-Q)."""

Section = Literal["baseline", "preSession", "afterSession", "afterLastSession"]

_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_SPAN = timedelta(days=400)
"""No protocol time reaches further: the longest follow-up in §4.2 is 12 weeks after a course
(a year and a month leaves room for a clinic's own); a larger value is a typo, and would overflow
date arithmetic when a session is planned."""
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class ProtocolError(ValueError):
    """A protocol document is malformed or clinically inconsistent (a start-up failure)."""


class _Document(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    """Immutable, camelCase in JSON, strict about unknown keys (a typo must not pass silently)."""


class Repeat(_Document, frozen=True):
    """The step recurs every `every` after its first offset, up to `through` (inclusive).

    `through` may be omitted only for course-anchored steps, which recur for as long as the
    course runs (each session plans the occurrences up to the next one)."""

    every: timedelta
    through: timedelta | None = None


class CourseWeeks(_Document, frozen=True):
    """The step applies only to sessions in these course weeks (week 1 starts with session 1)."""

    first: int
    last: int | None = None


class Substitution(_Document, frozen=True):
    """Ask `use` instead of `replace` when `use` was last answered at least `when_older_than`
    before the check-in is due, or never (N2O pre-session: "MADRS-S, or PHQ-9 if >= 7 d since
    the last PHQ-9", clinical-spec §4.2)."""

    replace: str
    use: str
    when_older_than: timedelta


class Step(_Document, frozen=True):
    """One rung of a ladder: a check-in due at `offset` from its anchor, answerable from `opens`
    to `closes` (same anchor; the window closes = the check-in expires and is marked missed)."""

    id: str
    label: str
    """The time point in the clinic's words (clinical-spec §4.1): "+24 h", "Day 7"."""
    offset: timedelta
    opens: timedelta
    closes: timedelta
    instruments: tuple[str, ...]
    anchor: Anchor = "session_end"
    priority: Priority = "normal"
    reminders: tuple[timedelta, ...] | None = None
    """Delays after the due time; None = the protocol default."""
    repeat: Repeat | None = None
    course_weeks: CourseWeeks | None = None
    stops_at_next_session: bool = False
    """Skip the occurrence when the next session starts before its window closes: that
    session's own pre-session check-in supersedes it ("Day 14, if no new session")."""
    substitution: Substitution | None = None
    note: str = ""
    """Why the step looks as it does, or what the spec asks that is not a patient form."""


class Defaults(_Document, frozen=True):
    reminders: tuple[timedelta, ...]
    """clinical-spec §4.2: one reminder 12 h after a check-in is due."""
    missed_flag_after: timedelta
    """clinical-spec §4.2: a clinician "missed check-in" flag 48 h after the due time."""


class Protocol(_Document, frozen=True):
    id: str
    version: str
    modality: Modality
    source: str
    defaults: Defaults
    baseline: tuple[Step, ...] = ()
    """Course baseline B0, asked before the first session only."""
    pre_session: tuple[Step, ...] = ()
    after_session: tuple[Step, ...] = ()
    after_last_session: tuple[Step, ...] = ()
    """Follow-up once a session is known to be the course's last."""
    note: str = ""

    def sections(self) -> Iterator[tuple[Section, tuple[Step, ...]]]:
        yield "baseline", self.baseline
        yield "preSession", self.pre_session
        yield "afterSession", self.after_session
        yield "afterLastSession", self.after_last_session

    def step(self, step_id: str) -> Step | None:
        return next((s for _, steps in self.sections() for s in steps if s.id == step_id), None)


class ProtocolRef(_Document, frozen=True):
    id: str
    version: str


class OverrideSteps(_Document, frozen=True):
    baseline: tuple[Step, ...] = ()
    pre_session: tuple[Step, ...] = ()
    after_session: tuple[Step, ...] = ()
    after_last_session: tuple[Step, ...] = ()


class ProtocolOverride(_Document, frozen=True):
    """A clinic's changes to a base protocol (rules in the module docstring)."""

    id: str
    version: str
    extends: ProtocolRef
    source: str
    defaults: Defaults | None = None
    remove: tuple[str, ...] = ()
    steps: OverrideSteps = OverrideSteps()


def decode_protocol(data: bytes, source: str) -> Protocol:
    """Decode and check one protocol document; `source` prefixes every error message."""
    try:
        protocol = msgspec.json.decode(data, type=Protocol)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"{source}: {exc}") from exc
    return _checked(protocol, source)


def decode_override(data: bytes, source: str) -> ProtocolOverride:
    try:
        return msgspec.json.decode(data, type=ProtocolOverride)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"{source}: {exc}") from exc


def apply_override(base: Protocol, override: ProtocolOverride) -> Protocol:
    """The base protocol with a clinic's override applied, checked like a shipped file."""
    source = f"override {override.id}@{override.version}"
    if (override.extends.id, override.extends.version) != (base.id, base.version):
        raise ProtocolError(
            f"{source}: extends {override.extends.id}@{override.extends.version}, "
            f"not {base.id}@{base.version}"
        )
    base_ids = {s.id: section for section, steps in base.sections() for s in steps}
    unknown = sorted(set(override.remove) - set(base_ids))
    if unknown:
        raise ProtocolError(f"{source}: cannot remove unknown steps {unknown}")
    sections: dict[Section, list[Step]] = {
        section: [s for s in steps if s.id not in override.remove]
        for section, steps in base.sections()
    }
    for section, steps in _override_sections(override.steps):
        for step in steps:
            home = base_ids.get(step.id)
            if home is not None and home != section and step.id not in override.remove:
                raise ProtocolError(f"{source}: step {step.id} cannot move from {home}")
            kept = [s for s in sections[section] if s.id != step.id]
            sections[section] = [*kept, step]
    merged = msgspec.structs.replace(
        base,
        id=override.id,
        version=override.version,
        source=f"{base.source}; {override.source}",
        defaults=override.defaults or base.defaults,
        baseline=_by_offset(sections["baseline"]),
        pre_session=_by_offset(sections["preSession"]),
        after_session=_by_offset(sections["afterSession"]),
        after_last_session=_by_offset(sections["afterLastSession"]),
    )
    return _checked(merged, source)


def _override_sections(steps: OverrideSteps) -> Iterator[tuple[Section, tuple[Step, ...]]]:
    yield "baseline", steps.baseline
    yield "preSession", steps.pre_session
    yield "afterSession", steps.after_session
    yield "afterLastSession", steps.after_last_session


def _by_offset(steps: Iterable[Step]) -> tuple[Step, ...]:
    return tuple(sorted(steps, key=lambda s: (s.anchor, s.offset, s.id)))


def _checked(protocol: Protocol, source: str) -> Protocol:
    problems = list(protocol_problems(protocol))
    if problems:
        raise ProtocolError(f"{source}: " + "; ".join(problems))
    return protocol


def protocol_problems(protocol: Protocol) -> Iterator[str]:
    """Every rule the protocol breaks, in plain words."""
    if not _ID.fullmatch(protocol.id):
        yield f"id {protocol.id!r} must be lower-case letters, digits and single hyphens"
    if not _VERSION.fullmatch(protocol.version):
        yield f"version {protocol.version!r} must be MAJOR.MINOR.PATCH"
    yield from _delay_problems("defaults", protocol.defaults.reminders)
    if protocol.defaults.missed_flag_after <= timedelta(0):
        yield "defaults: missedFlagAfter must be positive"
    if protocol.defaults.missed_flag_after > MAX_SPAN:
        yield f"defaults: missedFlagAfter must not exceed {MAX_SPAN.days} days"
    seen: set[str] = set()
    for section, steps in protocol.sections():
        for step in steps:
            if step.id in seen:
                yield f"step {step.id} is defined twice"
            seen.add(step.id)
            yield from (f"{step.id}: {p}" for p in _step_problems(section, step))
        order = [(s.anchor, s.offset) for s in steps]
        if order != sorted(order):
            yield f"{section}: steps must be sorted by offset"


def _step_problems(section: Section, step: Step) -> Iterator[str]:
    if not _ID.fullmatch(step.id):
        yield "step id must be lower-case letters, digits and single hyphens"
    spans = [step.offset, step.opens, step.closes, *(step.reminders or ())]
    if step.repeat is not None:
        spans += [step.repeat.every, *([step.repeat.through] if step.repeat.through else [])]
    if step.substitution is not None:
        spans.append(step.substitution.when_older_than)
    if any(abs(span) > MAX_SPAN for span in spans):
        yield f"times must lie within {MAX_SPAN.days} days"
    if not step.opens < step.closes:
        yield "window must close after it opens"
    if not step.opens <= step.offset < step.closes:
        yield "the due offset must lie inside the window"
    yield from _instrument_problems(step)
    if step.reminders is not None:
        yield from _delay_problems("reminders", step.reminders)
    if step.course_weeks is not None:
        weeks = step.course_weeks
        if weeks.first < 1 or (weeks.last is not None and weeks.last < weeks.first):
            yield "course weeks must start at week 1 or later and not end before they start"
    yield from _anchor_problems(section, step)
    yield from _repeat_problems(step)


def _instrument_problems(step: Step) -> Iterator[str]:
    if not step.instruments:
        yield "a step needs at least one instrument"
    if len(set(step.instruments)) != len(step.instruments):
        yield "an instrument is listed twice"
    named = list(step.instruments)
    if step.substitution is not None:
        named.append(step.substitution.use)
        if step.substitution.replace not in step.instruments:
            yield f"substitution replaces {step.substitution.replace}, which the step does not ask"
        if step.substitution.use in step.instruments:
            yield f"substitution uses {step.substitution.use}, which the step already asks"
        if step.substitution.when_older_than <= timedelta(0):
            yield "substitution age must be positive"
    for instrument_id in named:
        try:
            instrument = get_instrument(instrument_id)
        except UnknownInstrumentError:
            yield f"unknown instrument {instrument_id}"
            continue
        if instrument.respondent != "patient":
            yield f"{instrument_id} is clinician-rated, not a patient check-in"


def _anchor_problems(section: Section, step: Step) -> Iterator[str]:
    before_session = section in ("baseline", "preSession")
    if before_session:
        if step.anchor != "session_start" or step.closes > timedelta(0):
            yield f"{section} steps count back from the session start and close by it"
        if step.repeat is not None or step.stops_at_next_session:
            yield f"{section} steps neither repeat nor stop at the next session"
    elif step.anchor == "session_start" or step.opens <= timedelta(0):
        yield f"{section} steps open after the session (course or session-end anchor)"
    if step.anchor == "course_start" and (section != "afterSession" or step.repeat is None):
        yield "course-anchored steps belong to afterSession and must repeat"


def _repeat_problems(step: Step) -> Iterator[str]:
    repeat = step.repeat
    if repeat is None:
        return
    if repeat.every <= timedelta(0):
        yield "repeat interval must be positive"
        return
    if step.closes - step.opens > repeat.every:
        yield "a repeating step's window must not be wider than its interval"
    if repeat.through is None:
        if step.anchor != "course_start":
            yield "only course-anchored steps may repeat without an end"
    elif repeat.through < step.offset:
        yield "repeat must not end before the first occurrence"


def _delay_problems(where: str, delays: tuple[timedelta, ...]) -> Iterator[str]:
    if any(d <= timedelta(0) for d in delays) or list(delays) != sorted(set(delays)):
        yield f"{where}: reminder delays must be positive, distinct and sorted"
    if any(d > MAX_SPAN for d in delays):
        yield f"{where}: reminder delays must not exceed {MAX_SPAN.days} days"


@functools.cache
def shipped_protocols() -> dict[Modality, Protocol]:
    """The default protocol of each modality (clinical-spec §4.2), loaded and checked once."""
    protocols: dict[Modality, Protocol] = {}
    folder = resources.files("backend.domain.check_ins").joinpath("protocols")
    for file in sorted(folder.iterdir(), key=lambda f: f.name):
        if not file.name.endswith(".json"):
            continue
        protocol = decode_protocol(file.read_bytes(), file.name)
        if protocol.modality in protocols:
            raise ProtocolError(f"{file.name}: a second default for {protocol.modality}")
        protocols[protocol.modality] = protocol
    missing = [m for m in MODALITIES if m not in protocols]
    if missing:
        raise ProtocolError(f"no default protocol for {missing}")
    return protocols


def default_protocol(modality: Modality) -> Protocol:
    return shipped_protocols()[modality]
