"""A synthetic clinic with known identifying values, for proving that none of them leaves.

Every identifying value is distinctive (unusual names, reserved-range phone numbers and IPs), so
a byte search of the export cannot miss it or hit it by chance.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from backend.domain.exports.records import (
    AlertRecord,
    ItemAnswerRecord,
    Modality,
    PatientRecord,
    PatientTimeline,
    Route,
    ScoredResponseRecord,
    SessionObservationRecord,
    SideEffectRecord,
    TreatmentCourseRecord,
    TreatmentSessionRecord,
)
from questionnaires.answers import Answer, Submission
from questionnaires.registry import get_instrument, score_submission

GIVEN = "Perpetua"
FAMILY = "Wigglesworth"
CLINIC_ID = uuid.UUID("5b1f0c0e-8d7a-4c1e-9a0b-0c0ffee00001")
EPOCH = dt.datetime(2025, 3, 3, 9, 17, 23, tzinfo=dt.UTC)
_MODALITY: dict[Modality, tuple[Route, float, str]] = {
    "n2o": ("inhalation", 50.0, "%"),
    "ketamine_iv": ("intravenous", 0.5, "mg/kg"),
    "esketamine_in": ("intranasal", 56.0, "mg"),
}


@dataclass
class Identifiers:
    """Everything identifying the clinic gave us; the test searches the export for each."""

    strings: set[str] = field(default_factory=set)
    instants: set[dt.datetime] = field(default_factory=set)
    dates: set[dt.date] = field(default_factory=set)
    uuids: set[uuid.UUID] = field(default_factory=set)


def _uuid(identifiers: Identifiers, *parts: object) -> uuid.UUID:
    value = uuid.uuid5(CLINIC_ID, "/".join(map(str, parts)))
    identifiers.uuids.add(value)
    return value


PARTIAL_SKIPS = ("phq9-8", "phq9-9")
"""What a partial patient leaves out of two of their PHQ-9s: item 8 (the scorer prorates the
total) and item 9 (no total at all: a safety item is never imputed)."""


class _Scored(NamedTuple):
    answers: tuple[ItemAnswerRecord, ...]
    total: int | None
    band: str | None
    prorated: bool
    missing_items: tuple[str, ...]


@cache
def _phq9(level: int, skip: str | None = None) -> _Scored:
    instrument = get_instrument("phq9")
    answers = tuple(
        Answer(link_id=item.link_id, value=(level + n) % 4)
        for n, item in enumerate(instrument.items)
        if item.type == "choice"
        and item.link_id in {f"phq9-{i}" for i in range(1, 10)}
        and item.link_id != skip
    )
    scored = score_submission(
        Submission(instrument_id="phq9", instrument_version=instrument.version, answers=answers)
    )
    records = tuple(ItemAnswerRecord(link_id=a.link_id, value=a.value) for a in answers)
    return _Scored(records, scored.total, scored.band, scored.prorated, scored.missing_items)


def patient(
    index: int,
    identifiers: Identifiers,
    *,
    birth_date: dt.date,
    sex: str = "female",
    zip_code: str = "02139",
    state: str = "US-MA",
    modality: Modality = "ketamine_iv",
    sessions: int = 4,
    responses_per_session: int = 2,
    alert_kinds: tuple[str, ...] = (),
    consent: bool = True,
    start: dt.datetime = EPOCH,
    partial: bool = False,
) -> PatientTimeline:
    """One patient; with `partial`, the last session's responses each skip an item
    (`PARTIAL_SKIPS`)."""
    given, family = f"{GIVEN}{index:04d}", f"{FAMILY}{index:04d}"
    email = f"{given.lower()}.{family.lower()}@example-clinic.org"
    phone = f"+1-617-555-{index % 10_000:04d}"
    mrn = f"MRN-77{index:06d}"
    token, install, ip = f"devtok-{given}-fcm", f"install-{given}", f"203.0.113.{index % 250}"
    identifiers.strings |= {given, family, email, phone, mrn, token, install, ip}
    identifiers.strings.add(f"617555{index % 10_000:04d}")
    identifiers.dates.add(birth_date)
    patient_id = _uuid(identifiers, "patient", index)
    course_id = _uuid(identifiers, "course", index)
    route, dose, unit = _MODALITY[modality]
    course_start = start + dt.timedelta(days=index % 17, minutes=index * 7)
    identifiers.instants.add(course_start)
    session_records = []
    responses = []
    side_effects = []
    measured = []
    for k in range(sessions):
        at = course_start + dt.timedelta(days=3 * k, hours=1, seconds=k * 11)
        identifiers.instants.add(at)
        session_id = _uuid(identifiers, "session", index, k)
        # A pre-dose blood pressure (timed) and a sedation rating without a time.
        reading_at = at - dt.timedelta(minutes=6, seconds=index % 50)
        identifiers.instants.add(reading_at)
        measured += [
            SessionObservationRecord(
                observation_id=_uuid(identifiers, "blood-pressure", index, k),
                session_id=session_id,
                course_id=course_id,
                measure="blood_pressure",
                values=(float(118 + (index + k) % 30), float(76 + k % 10)),
                measured_at=reading_at,
            ),
            SessionObservationRecord(
                observation_id=_uuid(identifiers, "moaas", index, k),
                session_id=session_id,
                course_id=course_id,
                measure="moaas",
                values=(float(5 - k % 2),),
                measured_at=None,
            ),
        ]
        session_records.append(
            TreatmentSessionRecord(
                session_id=session_id,
                course_id=course_id,
                modality=modality,
                started_at=at,
                ended_at=at + dt.timedelta(minutes=40),
                dose=dose,
                dose_unit=unit,
                route=route,
                notes=f"Seen by nurse {family}; {given} tolerated well",
                device_serial=f"SN-{given}",
            )
        )
        for r in range(responses_per_session):
            authored = at + dt.timedelta(hours=2 + 22 * r, minutes=r * 3 + 1)
            identifiers.instants.add(authored)
            skip = PARTIAL_SKIPS[r % 2] if partial and k == sessions - 1 else None
            scored = _phq9((index + k + r) % 4, skip)
            note = f"Told {given} {family} I feel better, call me on {phone}"
            identifiers.strings.add(note)
            responses.append(
                ScoredResponseRecord(
                    response_id=_uuid(identifiers, "response", index, k, r),
                    instrument_id="phq9",
                    instrument_version=get_instrument("phq9").version,
                    scorer_version="1.0.0",
                    authored_at=authored,
                    answers=scored.answers,
                    total=scored.total,
                    band=scored.band,
                    prorated=scored.prorated,
                    missing_items=scored.missing_items,
                    course_id=course_id,
                    free_text=note,
                    source_ip=ip,
                    device_id=token,
                )
            )
        onset = at + dt.timedelta(hours=1, minutes=5)
        identifiers.instants.add(onset)
        side_effects.append(
            SideEffectRecord(
                side_effect_id=_uuid(identifiers, "side-effect", index, k),
                code="dissociation",
                severity=(index + k) % 4,
                onset_at=onset,
                course_id=course_id,
                note=f"{given} felt detached",
            )
        )
    alerts = []
    for n, kind in enumerate(alert_kinds):
        raised = course_start + dt.timedelta(days=1, hours=n, seconds=37)
        identifiers.instants.add(raised)
        acknowledged = raised + dt.timedelta(minutes=42, seconds=n)
        resolved = raised + dt.timedelta(hours=5, seconds=n)
        identifiers.instants |= {acknowledged, resolved}
        note = f"Phoned {given} {family} on {phone}, safe at home"
        identifiers.strings.add(note)
        alerts.append(
            AlertRecord(
                alert_id=_uuid(identifiers, "alert", index, n),
                kind=kind,
                severity="urgent",
                rule_id=f"{kind}-rule",
                rule_version="1.2.0",
                raised_at=raised,
                status="resolved" if n % 2 == 0 else "acknowledged",
                occurrence_count=1 + n,
                opened_at=raised,
                acknowledged_at=acknowledged,
                resolved_at=resolved if n % 2 == 0 else None,
                course_id=course_id,
                resolution_note=note,
            )
        )
    return PatientTimeline(
        patient=PatientRecord(
            patient_id=patient_id,
            clinic_id=CLINIC_ID,
            research_consent=consent,
            birth_date=birth_date,
            sex=sex,  # type: ignore[arg-type]
            state=state,
            zip_code=zip_code,
            time_zone="America/New_York",
            given_name=given,
            family_name=family,
            email=email,
            phone=phone,
            medical_record_number=mrn,
            device_tokens=(token,),
            ip_addresses=(ip,),
            app_install_id=install,
        ),
        courses=(
            TreatmentCourseRecord(course_id=course_id, modality=modality, started_at=course_start),
        ),
        sessions=tuple(session_records),
        responses=tuple(responses),
        side_effects=tuple(side_effects),
        session_observations=tuple(measured),
        alerts=tuple(alerts),
    )


def clinic(identifiers: Identifiers, size: int = 40) -> list[PatientTimeline]:
    """Four groups of ten (90+ women on ketamine; women and men aged 44-45 on ketamine or
    esketamine), plus one patient without research consent and one whose rare alert (N2O
    neurological symptoms) puts them alone in a class. 5-year age bands split the 44- and
    45-year-olds; 10-year bands make every group reach k = 5. Every fifth patient left items out
    of two PHQ-9s (`patient`'s `partial`)."""
    timelines = []
    for i in range(size):
        old = i % 4 == 0
        timelines.append(
            patient(
                i,
                identifiers,
                birth_date=dt.date(1930 + i % 3, 1 + i % 12, 1 + i % 28)
                if old
                else dt.date(1980, 1 + i % 12, 2 + i % 27),
                sex="male" if i % 4 == 2 else "female",
                zip_code=f"0213{i % 10}",
                modality="ketamine_iv" if i % 4 < 2 else "esketamine_in",
                alert_kinds=("SUICIDALITY",) if i % 7 == 0 else (),
                partial=i % 5 == 1,
            )
        )
    timelines.append(patient(size, identifiers, birth_date=dt.date(1975, 5, 5), consent=False))
    timelines.append(
        patient(
            size + 1,
            identifiers,
            birth_date=dt.date(1981, 6, 6),
            alert_kinds=("N2O_NEURO_SYMPTOMS",),
        )
    )
    return timelines


def stream(count: int) -> Iterator[PatientTimeline]:
    """Many interchangeable patients, built lazily (for the memory test)."""
    for i in range(count):
        yield patient(
            i,
            Identifiers(),
            birth_date=dt.date(1980, 1, 1),
            zip_code="02139",
            sessions=4,
            responses_per_session=2,
        )
