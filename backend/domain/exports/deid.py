"""De-identification of one patient's timeline: HIPAA Safe Harbor, done in the application
because the database holds only ciphertext (engineering-notes §E).

What leaves (45 CFR 164.514(b)(2), mapping in §E.1):

- a pseudonymous study id: HMAC-SHA256 of the internal random UUID under a key that is new for
  every export, or kept per study when the study needs stable ids across exports (§E.3). Never a
  hash of a name, email or record number;
- age as a band at the first treatment, ages over 89 as "90+"; sex; region as a state or the
  first three ZIP digits ("000" for sparse areas);
- time only relative to the patient's own anchors: hours and days since the start of the course,
  the index k of the latest treatment session and the hours since it; the calendar year of the
  first treatment is the only calendar element (§E.2), and only without a date shift;
- codes and numbers: instrument ids and versions, item answers, totals, side-effect codes and
  severities, session observations (blood pressure, CADSS-6, MOAA/S), alert kinds and rule
  versions.

What never leaves: names, contact details, record numbers, device ids and tokens, IP addresses,
internal ids, clinician notes, exact dates and timestamps, and free text (a patient's note can
contain anything, names included) unless the export opts in to free text.

An optional per-patient date shift (off by default) adds shifted timestamps and leaves out the
real first-treatment year; shifted dates are still dates, so such an export is a limited data
set, not Safe Harbor (§E.2).

Pure functions: the caller passes the keys; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import hmac
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import msgspec

from backend.domain.exports.kanon import (
    KAnonymityDecision,
    QuasiIdentifiers,
    class_key,
)
from backend.domain.exports.records import (
    SESSION_VARIABLES,
    AlertRecord,
    AlertRow,
    DeidentifiedBatch,
    ObservationKind,
    ObservationRow,
    PatientRecord,
    PatientRow,
    PatientTimeline,
    ScoredResponseRecord,
    SessionObservationRecord,
    SessionRow,
    SideEffectRecord,
    TreatmentCourseRecord,
    TreatmentSessionRecord,
)
from backend.lib.errors import DomainError

IdScope = Literal["per_export", "per_study"]
Classification = Literal["safe_harbor", "limited_data_set", "requires_review"]

PSEUDONYM_KEY_BYTES = 32
_SHA256 = hashlib.sha256
_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
STUDY_ID_LENGTH = 26
"""26 base32 characters = 130 bits of the HMAC, as in §E.3."""

HOURS_DECIMALS = 2
"""Relative times are rounded to 36 seconds: enough for the 2 h / 24 h time points of the
schedules (clinical-spec §4), and exact event spacings stop being a fingerprint."""

SAFE_HARBOR_RESTRICTED_ZIP3: frozenset[str] = frozenset(
    {
        "036", "059", "063", "102", "203", "556", "692", "790", "821",
        "823", "830", "831", "878", "879", "884", "890", "893",
    }
)  # fmt: skip
"""Three-digit ZIP areas with 20,000 or fewer people (2000 Census), exported as "000": the 17
listed in the HHS de-identification guidance. HHS asks for newer Census data when published, so
the profile lets a deployment replace this list. [R: re-check against the current Census.]"""

DEFAULT_RARE_FLAGS: tuple[str, ...] = (
    "N2O_NEURO_SYMPTOMS",
    "MNSI_NEUROPATHY",
    "KETAMINE_BLADDER",
    "KETAMINE_MISUSE",
    "PSYCHOTIC_SYMPTOMS",
)
"""Alert kinds (`backend.domain.alerts.candidate.AlertKind`) treated as quasi-identifiers: rare
in a clinic's cohort, so they single people out (§E.4: "rare flags such as B12-neuro")."""


class DeidentificationProfile(msgspec.Struct, frozen=True, kw_only=True):
    id_scope: IdScope = "per_export"
    include_free_text: bool = False
    date_shift: bool = False
    max_date_shift_days: int = 364
    """Shifts are 1..max days back in time, per patient (REDCap's convention, §E.2)."""
    rare_flags: tuple[str, ...] = DEFAULT_RARE_FLAGS
    restricted_zip3: frozenset[str] = SAFE_HARBOR_RESTRICTED_ZIP3

    def __post_init__(self) -> None:
        if self.max_date_shift_days < 1:
            raise ValueError("max_date_shift_days must be at least 1")

    @property
    def classification(self) -> Classification:
        """Free text can name anyone, so an export carrying it needs a human review whatever
        else it does; shifted dates make a limited data set (needs a data use agreement)."""
        if self.include_free_text:
            return "requires_review"
        if self.date_shift:
            return "limited_data_set"
        return "safe_harbor"


class CohortChanged(DomainError):
    """A patient's quasi-identifiers differ from what the k-anonymity gate cleared (data changed
    between the two passes); the export must start again."""

    status_code: ClassVar[int] = 409
    problem_type: ClassVar[str] = "export-cohort-changed"
    title: ClassVar[str] = "The cohort changed while the export ran"


class Pseudonymiser:
    """Keyed pseudonyms for one export. The key is secret and never leaves the service: with a
    per-export key two exports cannot be linked; with a per-study key they can (§E.3)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < PSEUDONYM_KEY_BYTES:
            raise ValueError(f"a pseudonym key needs at least {PSEUDONYM_KEY_BYTES} bytes")
        self._key = key

    def _mac(self, purpose: bytes, value: uuid.UUID) -> bytes:
        # The purpose label keeps study ids, record ids and date shifts unrelated to each other.
        return hmac.digest(self._key, purpose + b"|" + value.bytes, hashlib.sha256)

    def study_id(self, patient_id: uuid.UUID) -> str:
        return base32_id(self._mac(b"interlude|study-id|v1", patient_id))

    def record_id(self, kind: str, record_id: uuid.UUID) -> str:
        return self.record_id_of_bytes(kind, record_id.bytes)

    def record_id_of_bytes(self, kind: str, record_id: bytes) -> str:
        """`record_id` from the id's 16 bytes (the export's hot path reads ids as bytes)."""
        digest = hmac.digest(
            self._key, b"interlude|record-id|v1|" + kind.encode("ascii") + b"|" + record_id, _SHA256
        )
        return base32_id(digest)

    def record_ids_of_bytes(self, kind: str, record_ids: Iterable[bytes]) -> list[str]:
        """`record_id_of_bytes` for many ids, the same strings (`record_id_digests`, then
        `base32_id`). `tests/exports/test_deid.py` compares the two."""
        return [base32_id(digest) for digest in self.record_id_digests(kind, record_ids)]

    def record_id_digests(self, kind: str, record_ids: Iterable[bytes]) -> list[bytes]:
        """The HMAC-SHA256 digests `record_id_of_bytes` encodes, for many ids. HMAC (RFC 2104)
        is H(key ^ opad || H(key ^ ipad || message)); the keyed inner and outer SHA-256 states
        and the message's fixed prefix are hashed once here, so each id costs two short hash
        continuations instead of a whole HMAC (a third of the time: the export names a million
        records; `columnar.base32_ids` encodes a page's digests at once)."""
        key = self._key
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        inner_start = hashlib.sha256(key.translate(_IPAD))
        inner_start.update(b"interlude|record-id|v1|" + kind.encode("ascii") + b"|")
        outer_start = hashlib.sha256(key.translate(_OPAD))
        digests: list[bytes] = []
        append = digests.append
        for record_id in record_ids:
            inner = inner_start.copy()
            inner.update(record_id)
            outer = outer_start.copy()
            outer.update(inner.digest())
            append(outer.digest())
        return digests

    def date_shift_days(self, patient_id: uuid.UUID, max_days: int) -> int:
        """A constant shift per patient, 1..max_days back, so intervals survive (§E.2)."""
        digest = self._mac(b"interlude|date-shift|v1", patient_id)
        return -(1 + int.from_bytes(digest[:8], "big") % max_days)


_B32_PAIRS: tuple[str, ...] = tuple(
    a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567"
)
_B32_SHIFTS = tuple(range(120, -1, -10))


def base32_id(digest: bytes) -> str:
    """The first 26 characters of the lowercase RFC 4648 base32 encoding of `digest` (130
    bits), as `base64.b32encode(digest)[:26].lower()` gives them, ten bits per table lookup:
    `base64`'s encoder is pure Python, and an export names a million records."""
    bits = int.from_bytes(digest[:17], "big") >> 6
    pairs = _B32_PAIRS
    return "".join([pairs[(bits >> shift) & 1023] for shift in _B32_SHIFTS])


def safe_harbor_zip3(zip_code: str | None, restricted: frozenset[str]) -> str | None:
    if zip_code is None:
        return None
    digits = zip_code.strip()[:3]
    if len(digits) != 3 or not digits.isdigit():
        return None
    return "000" if digits in restricted else digits


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Completed years (a birthday on 29 February counts on 1 March in common years)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def _first_treatment(timeline: PatientTimeline) -> dt.datetime | None:
    starts = [c.started_at for c in timeline.courses] + [s.started_at for s in timeline.sessions]
    return min(starts, default=None)


def quasi_identifiers(
    timeline: PatientTimeline, profile: DeidentificationProfile
) -> QuasiIdentifiers | None:
    """The patient's quasi-identifiers for the k-anonymity gate, or None when the patient's
    consent does not allow research use.

    Reads only the patient, courses, sessions and alerts: the first pass of an export may
    leave responses and side effects empty.
    """
    patient = timeline.patient
    if not patient.research_consent:
        return None
    first = _first_treatment(timeline)
    modalities = {c.modality for c in timeline.courses} | {s.modality for s in timeline.sessions}
    flags = {a.kind for a in timeline.alerts} & set(profile.rare_flags)
    return QuasiIdentifiers(
        age=None
        if patient.birth_date is None or first is None
        else age_on(patient.birth_date, first.date()),
        sex=patient.sex,
        zip3=safe_harbor_zip3(patient.zip_code, profile.restricted_zip3),
        state=_state(patient),
        modality="+".join(sorted(modalities)) or "none",
        n_courses=len(timeline.courses),
        n_sessions=len(timeline.sessions),
        # Under a date shift the real year would bound each patient's secret offset (a shifted
        # date in January with a real year one later says the shift is short): not exported,
        # and so not a class the gate counts either. The shifted dates carry a shifted year.
        first_treatment_year=None if first is None or profile.date_shift else first.year,
        rare_flags=tuple(sorted(flags)),
    )


def _state(patient: PatientRecord) -> str | None:
    if patient.state is None:
        return None
    state = patient.state.strip().upper()
    # ISO 3166-2 subdivision codes only; anything else could be free text typed by a person.
    country, _, subdivision = state.partition("-")
    if len(country) != 2 or not 1 <= len(subdivision) <= 3 or not state.replace("-", "").isalnum():
        return None
    return state


class _Position(msgspec.Struct, frozen=True, kw_only=True):
    course_index: int | None
    session_index: int | None
    hours_since_session: float | None
    hours_since_course_start: float | None
    day_since_course_start: int | None


class _Course(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    record: TreatmentCourseRecord
    session_starts: tuple[dt.datetime, ...]


def _hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, HOURS_DECIMALS)


class _TreatmentClock:
    """Places events on the patient's treatment time line (course k, session k, hours since)."""

    def __init__(
        self,
        courses: Sequence[TreatmentCourseRecord],
        sessions: Sequence[TreatmentSessionRecord],
    ) -> None:
        ordered = sorted(courses, key=lambda c: (c.started_at, c.course_id.bytes))
        known = {c.course_id for c in ordered}
        if any(s.course_id not in known for s in sessions):
            raise ValueError("a treatment session refers to a course missing from the timeline")
        self.sessions_by_course: dict[uuid.UUID, list[TreatmentSessionRecord]] = {
            c.course_id: [] for c in ordered
        }
        for session in sorted(sessions, key=lambda s: (s.started_at, s.session_id.bytes)):
            self.sessions_by_course[session.course_id].append(session)
        self.courses = [
            _Course(
                index=index,
                record=course,
                session_starts=tuple(
                    s.started_at for s in self.sessions_by_course[course.course_id]
                ),
            )
            for index, course in enumerate(ordered, start=1)
        ]
        self._by_id = {c.record.course_id: c for c in self.courses}
        self._starts = [c.record.started_at for c in self.courses]
        self._session_of: dict[uuid.UUID, tuple[_Course, int, dt.datetime]] = {
            session.session_id: (course, index, session.started_at)
            for course in self.courses
            for index, session in enumerate(
                self.sessions_by_course[course.record.course_id], start=1
            )
        }

    def course_for(self, at: dt.datetime, course_id: uuid.UUID | None) -> _Course | None:
        if course_id is not None and course_id in self._by_id:
            return self._by_id[course_id]
        if not self.courses:
            return None
        # The latest course started by then; before any course, the first (negative hours).
        return self.courses[max(bisect.bisect_right(self._starts, at) - 1, 0)]

    def place(
        self, at: dt.datetime
    ) -> tuple[int | None, int | None, float | None, float | None, int | None]:
        """`position(at, None)` as a tuple (course index, session index, hours since session,
        hours since course start, day since course start): the export's hot path."""
        courses = self.courses
        if not courses:
            return None, None, None, None, None
        course = courses[max(bisect.bisect_right(self._starts, at) - 1, 0)]
        since_start = round((at - course.record.started_at).total_seconds() / 3600, HOURS_DECIMALS)
        starts = course.session_starts
        k = bisect.bisect_right(starts, at)
        return (
            course.index,
            k,
            None if k == 0 else round((at - starts[k - 1]).total_seconds() / 3600, HOURS_DECIMALS),
            since_start,
            math.floor(since_start / 24),
        )

    def at_session(self, session_id: uuid.UUID, at: dt.datetime | None) -> _Position | None:
        """The place of something recorded at a session (its observations, side effects the
        clinic saw): session k is that session, whenever it was measured, so a pre-dose reading
        has negative hours since it. `at` None: measured at the session, time not recorded
        (no hours since the session; the course hours are the session's). None when the
        session is not on the time line."""
        found = self._session_of.get(session_id)
        if found is None:
            return None
        course, index, started = found
        since_start = _hours((started if at is None else at) - course.record.started_at)
        return _Position(
            course_index=course.index,
            session_index=index,
            hours_since_session=None if at is None else _hours(at - started),
            hours_since_course_start=since_start,
            day_since_course_start=math.floor(since_start / 24),
        )

    def position(self, at: dt.datetime, course_id: uuid.UUID | None) -> _Position:
        course = self.course_for(at, course_id)
        if course is None:
            return _Position(
                course_index=None,
                session_index=None,
                hours_since_session=None,
                hours_since_course_start=None,
                day_since_course_start=None,
            )
        since_start = _hours(at - course.record.started_at)
        # Session index 0 means "before the course's first session" (baseline).
        k = bisect.bisect_right(course.session_starts, at)
        return _Position(
            course_index=course.index,
            session_index=k,
            hours_since_session=None if k == 0 else _hours(at - course.session_starts[k - 1]),
            hours_since_course_start=since_start,
            day_since_course_start=math.floor(since_start / 24),
        )


@dataclass(frozen=True, slots=True)
class PatientContext:
    """What every de-identified row of one exported patient shares."""

    study_id: str
    clock: _TreatmentClock
    shift: dt.timedelta | None
    patient_row: PatientRow


def prepare_patient(
    timeline: PatientTimeline,
    *,
    profile: DeidentificationProfile,
    decision: KAnonymityDecision,
    pseudonymiser: Pseudonymiser,
) -> PatientContext | None:
    """The patient's pseudonym, clock and patients-table row; None when the patient is not in
    the export (no research consent, or suppressed by the k-anonymity gate).

    Raises `CohortChanged` when the patient's quasi-identifiers are not the ones the gate cleared.
    """
    qi = quasi_identifiers(timeline, profile)
    patient_id = timeline.patient.patient_id
    if qi is None or patient_id in decision.suppressed:
        return None
    key = class_key(qi, decision.generalisation)
    if decision.cleared.get(patient_id) != key:
        raise CohortChanged("a patient's quasi-identifiers changed after the k-anonymity gate")
    study_id = pseudonymiser.study_id(patient_id)
    shift = (
        dt.timedelta(days=pseudonymiser.date_shift_days(patient_id, profile.max_date_shift_days))
        if profile.date_shift
        else None
    )
    age_band, sex, region, modality, n_courses, n_sessions, year, rare_flags = key
    return PatientContext(
        study_id=study_id,
        clock=_TreatmentClock(timeline.courses, timeline.sessions),
        shift=shift,
        patient_row=PatientRow(
            study_id=study_id,
            age_band=age_band,
            sex=sex,
            region=region,
            modality=modality,
            n_courses=int(n_courses),
            n_sessions=int(n_sessions),
            first_treatment_year=int(year) if year.isdigit() else None,
            rare_flags=rare_flags,
        ),
    )


def deidentify(
    timeline: PatientTimeline,
    *,
    profile: DeidentificationProfile,
    decision: KAnonymityDecision,
    pseudonymiser: Pseudonymiser,
) -> DeidentifiedBatch:
    """One patient's de-identified rows; an empty batch when the patient is not in the export
    (no research consent, or suppressed by the k-anonymity gate).

    Raises `CohortChanged` when the patient's quasi-identifiers are not the ones the gate cleared.
    """
    context = prepare_patient(
        timeline, profile=profile, decision=decision, pseudonymiser=pseudonymiser
    )
    if context is None:
        return DeidentifiedBatch()
    return deidentify_prepared(timeline, context, profile=profile, pseudonymiser=pseudonymiser)


def deidentify_prepared(
    timeline: PatientTimeline,
    context: PatientContext,
    *,
    profile: DeidentificationProfile,
    pseudonymiser: Pseudonymiser,
) -> DeidentifiedBatch:
    """`deidentify` once `prepare_patient` has cleared the patient."""
    study_id, clock, shift = context.study_id, context.clock, context.shift
    observations: list[ObservationRow] = []
    for response in sorted(timeline.responses, key=lambda r: r.authored_at):
        observations += _response_rows(response, study_id, clock, profile, pseudonymiser, shift)
    observations += session_rows(timeline, context, profile=profile, pseudonymiser=pseudonymiser)
    return DeidentifiedBatch(
        patients=(context.patient_row,),
        sessions=tuple(_session_rows(study_id, clock, shift)),
        observations=tuple(observations),
        alerts=tuple(
            _alert_row(alert, study_id, clock, pseudonymiser, shift)
            for alert in sorted(timeline.alerts, key=lambda a: a.raised_at)
        ),
    )


def session_rows(
    timeline: PatientTimeline,
    context: PatientContext,
    *,
    profile: DeidentificationProfile,
    pseudonymiser: Pseudonymiser,
) -> list[ObservationRow]:
    """The observation rows of what the clinic recorded at the sessions: side effects (by
    onset), then the sessions' measurements (in the order given: by session, then reading)."""
    study_id, clock, shift = context.study_id, context.clock, context.shift
    rows: list[ObservationRow] = []
    for side_effect in sorted(timeline.side_effects, key=lambda s: s.onset_at):
        rows += _side_effect_rows(side_effect, study_id, clock, profile, pseudonymiser, shift)
    for measured in timeline.session_observations:
        rows += _session_observation_rows(measured, study_id, clock, pseudonymiser, shift)
    return rows


def _shifted(at: dt.datetime, shift: dt.timedelta | None) -> dt.datetime | None:
    return None if shift is None else (at + shift).astimezone(dt.UTC)


def _session_rows(
    study_id: str, clock: _TreatmentClock, shift: dt.timedelta | None
) -> list[SessionRow]:
    rows: list[SessionRow] = []
    for course in clock.courses:
        previous: dt.datetime | None = None
        for index, session in enumerate(clock.sessions_by_course[course.record.course_id], 1):
            since_start = _hours(session.started_at - course.record.started_at)
            rows.append(
                SessionRow(
                    study_id=study_id,
                    course_index=course.index,
                    session_index=index,
                    modality=session.modality,
                    dose=session.dose,
                    dose_unit=session.dose_unit,
                    route=session.route,
                    duration_minutes=None
                    if session.ended_at is None
                    else round((session.ended_at - session.started_at).total_seconds() / 60, 1),
                    hours_since_course_start=since_start,
                    day_since_course_start=math.floor(since_start / 24),
                    hours_since_previous_session=None
                    if previous is None
                    else _hours(session.started_at - previous),
                    shifted_start=_shifted(session.started_at, shift),
                )
            )
            previous = session.started_at
    return rows


class _Source(msgspec.Struct, frozen=True, kw_only=True):
    """What all the rows of one response or side-effect report share."""

    study_id: str
    record_id: str
    instrument_id: str | None
    instrument_version: str | None
    scorer_version: str | None
    where: _Position
    shifted_time: dt.datetime | None


def _observation(
    source: _Source,
    *,
    kind: ObservationKind,
    variable: str,
    value: float | None = None,
    value_text: str | None = None,
    band: str | None = None,
    prorated: bool | None = None,
    missing_items: int | None = None,
) -> ObservationRow:
    return ObservationRow(
        study_id=source.study_id,
        record_id=source.record_id,
        kind=kind,
        instrument_id=source.instrument_id,
        instrument_version=source.instrument_version,
        scorer_version=source.scorer_version,
        variable=variable,
        value=value,
        value_text=value_text,
        band=band,
        prorated=prorated,
        score_partial=None if missing_items is None else bool(prorated or missing_items),
        n_missing_items=missing_items,
        course_index=source.where.course_index,
        session_index=source.where.session_index,
        hours_since_session=source.where.hours_since_session,
        hours_since_course_start=source.where.hours_since_course_start,
        day_since_course_start=source.where.day_since_course_start,
        shifted_time=source.shifted_time,
    )


def _response_rows(
    response: ScoredResponseRecord,
    study_id: str,
    clock: _TreatmentClock,
    profile: DeidentificationProfile,
    pseudonymiser: Pseudonymiser,
    shift: dt.timedelta | None,
) -> list[ObservationRow]:
    source = _Source(
        study_id=study_id,
        record_id=pseudonymiser.record_id("response", response.response_id),
        instrument_id=response.instrument_id,
        instrument_version=response.instrument_version,
        scorer_version=response.scorer_version,
        where=clock.position(response.authored_at, response.course_id),
        shifted_time=_shifted(response.authored_at, shift),
    )
    rows: list[ObservationRow] = []
    for answer in response.answers:
        if isinstance(answer.value, str):
            if profile.include_free_text:  # a free-text item: PHI unless opted in (§E.1)
                rows.append(
                    _observation(
                        source, kind="free_text", variable=answer.link_id, value_text=answer.value
                    )
                )
            continue
        # Yes/no answers count 1/0, as the scorer counts them.
        rows.append(
            _observation(source, kind="item", variable=answer.link_id, value=float(answer.value))
        )
    rows.append(
        _observation(
            source,
            kind="total",
            variable="total",
            value=None if response.total is None else float(response.total),
            band=response.band,
            prorated=response.prorated,
            missing_items=len(response.missing_items),
        )
    )
    if profile.include_free_text and response.free_text:
        rows.append(
            _observation(source, kind="free_text", variable="note", value_text=response.free_text)
        )
    return rows


def _side_effect_rows(
    side_effect: SideEffectRecord,
    study_id: str,
    clock: _TreatmentClock,
    profile: DeidentificationProfile,
    pseudonymiser: Pseudonymiser,
    shift: dt.timedelta | None,
) -> list[ObservationRow]:
    where = None
    if side_effect.session_id is not None:
        where = clock.at_session(side_effect.session_id, side_effect.onset_at)
    source = _Source(
        study_id=study_id,
        record_id=pseudonymiser.record_id("side_effect", side_effect.side_effect_id),
        instrument_id=None,
        instrument_version=None,
        scorer_version=None,
        where=where or clock.position(side_effect.onset_at, side_effect.course_id),
        shifted_time=_shifted(side_effect.onset_at, shift),
    )
    severity = None if side_effect.severity is None else float(side_effect.severity)
    rows = [_observation(source, kind="side_effect", variable=side_effect.code, value=severity)]
    if profile.include_free_text and side_effect.note:
        rows.append(
            _observation(
                source,
                kind="free_text",
                variable=f"{side_effect.code}_note",
                value_text=side_effect.note,
            )
        )
    return rows


def _session_observation_rows(
    measured: SessionObservationRecord,
    study_id: str,
    clock: _TreatmentClock,
    pseudonymiser: Pseudonymiser,
    shift: dt.timedelta | None,
) -> list[ObservationRow]:
    """One row per value of a session measurement (a blood-pressure reading gives two)."""
    at = measured.measured_at
    where = clock.at_session(measured.session_id, at)
    if where is None:  # the session is not exported (not held): neither is what it measured
        return []
    source = _Source(
        study_id=study_id,
        record_id=pseudonymiser.record_id("session_observation", measured.observation_id),
        instrument_id=None,
        instrument_version=None,
        scorer_version=None,
        where=where,
        shifted_time=None if at is None else _shifted(at, shift),
    )
    return [
        _observation(source, kind="session_observation", variable=variable, value=value)
        for variable, value in zip(
            SESSION_VARIABLES[measured.measure], measured.values, strict=True
        )
    ]


_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@+:")
MAX_CODE_LENGTH = 128


def export_code(value: str) -> str:
    """A rule id, kind or parameter version as a code: anything that is not one (a clinic could
    name its parameter override freely) leaves as "other", never as text typed by a person."""
    if not value or len(value) > MAX_CODE_LENGTH or not _CODE_CHARS.issuperset(value):
        return "other"
    return value


def _since(later: dt.datetime | None, earlier: dt.datetime | None) -> float | None:
    return None if later is None or earlier is None else _hours(later - earlier)


def _alert_row(
    alert: AlertRecord,
    study_id: str,
    clock: _TreatmentClock,
    pseudonymiser: Pseudonymiser,
    shift: dt.timedelta | None,
) -> AlertRow:
    where = clock.position(alert.raised_at, alert.course_id)
    # Lifecycle times count from when the alert opened (service levels count from there); the
    # event itself sits on the treatment time line by its first trigger.
    opened = alert.opened_at or alert.raised_at
    return AlertRow(
        study_id=study_id,
        record_id=pseudonymiser.record_id("alert", alert.alert_id),
        kind=export_code(alert.kind),
        severity=export_code(alert.severity),
        rule_id=export_code(alert.rule_id),
        rule_version=export_code(alert.rule_version),
        status=export_code(alert.status),
        occurrence_count=alert.occurrence_count,
        course_index=where.course_index,
        session_index=where.session_index,
        hours_since_session=where.hours_since_session,
        hours_since_course_start=where.hours_since_course_start,
        day_since_course_start=where.day_since_course_start,
        hours_to_last_trigger=_since(alert.last_triggered_at, alert.raised_at),
        hours_to_acknowledged=_since(alert.acknowledged_at, opened),
        hours_to_resolved=_since(alert.resolved_at, opened),
        shifted_time=_shifted(alert.raised_at, shift),
    )
