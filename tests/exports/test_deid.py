"""De-identification rules: pseudonyms, ages, ZIP, relative time, free text, consent."""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.exports import fhir
from backend.domain.exports.deid import (
    CohortChanged,
    DeidentificationProfile,
    Pseudonymiser,
    age_on,
    base32_id,
    deidentify,
    export_code,
    quasi_identifiers,
    safe_harbor_zip3,
)
from backend.domain.exports.kanon import KAnonymityPolicy, age_band
from backend.domain.exports.records import (
    AlertRecord,
    ItemAnswerRecord,
    ScoredResponseRecord,
    SessionObservationRecord,
    SideEffectRecord,
    TreatmentCourseRecord,
    TreatmentSessionRecord,
)
from tests.exports.pipeline import gate, run_export
from tests.exports.synthetic import EPOCH, Identifiers, clinic, patient

PROFILE = DeidentificationProfile()


def _study_ids(directory: Path) -> list[str]:
    ids: list[str] = (
        pq.read_table(directory / "parquet" / "patients.parquet").column("study_id").to_pylist()
    )
    return ids


def test_stable_ids_give_the_same_pseudonyms_in_two_exports(tmp_path: Path) -> None:
    study_key = secrets.token_bytes(32)
    timelines = clinic(Identifiers())
    run_export(timelines, tmp_path / "a", key=study_key, profile=DeidentificationProfile(
        id_scope="per_study"))  # fmt: skip
    run_export(timelines, tmp_path / "b", key=study_key, profile=DeidentificationProfile(
        id_scope="per_study"))  # fmt: skip
    assert _study_ids(tmp_path / "a") == _study_ids(tmp_path / "b")
    assert len(set(_study_ids(tmp_path / "a"))) == 40


def test_per_export_keys_give_unrelated_pseudonyms(tmp_path: Path) -> None:
    timelines = clinic(Identifiers())
    run_export(timelines, tmp_path / "a", key=secrets.token_bytes(32))
    run_export(timelines, tmp_path / "b", key=secrets.token_bytes(32))
    first, second = _study_ids(tmp_path / "a"), _study_ids(tmp_path / "b")
    assert len(first) == len(second) == 40
    assert not set(first) & set(second)
    record_ids = [
        set(pq.read_table(d / "parquet" / "observations.parquet").column("record_id").to_pylist())
        for d in (tmp_path / "a", tmp_path / "b")
    ]
    assert not record_ids[0] & record_ids[1]


def test_study_ids_are_26_base32_characters_and_not_the_uuid() -> None:
    patient_id = uuid.uuid4()
    study_id = Pseudonymiser(b"k" * 32).study_id(patient_id)
    assert len(study_id) == 26
    assert set(study_id) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert study_id not in (str(patient_id), patient_id.hex)
    assert Pseudonymiser(b"k" * 32).record_id("response", patient_id) != study_id


@given(st.binary(min_size=17, max_size=32))
def test_base32_ids_are_the_rfc_4648_encoding(digest: bytes) -> None:
    assert base32_id(digest) == base64.b32encode(digest).decode()[:26].lower()


@given(
    st.binary(min_size=32, max_size=100),
    st.sampled_from(["response", "alert"]),
    st.lists(st.binary(min_size=16, max_size=16), max_size=5),
)
def test_many_record_ids_at_once_are_the_hmac_ones(key: bytes, kind: str, ids: list[bytes]) -> None:
    # Keys longer than SHA-256's block are hashed first (RFC 2104); both paths must agree.
    pseudonymiser = Pseudonymiser(key)
    expected = [
        base32_id(hmac.digest(key, f"interlude|record-id|v1|{kind}|".encode() + i, "sha256"))
        for i in ids
    ]
    assert pseudonymiser.record_ids_of_bytes(kind, ids) == expected
    assert [pseudonymiser.record_id_of_bytes(kind, i) for i in ids] == expected


def test_a_short_pseudonym_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Pseudonymiser(b"short")


@given(st.integers(min_value=0, max_value=130), st.sampled_from([5, 10, 20]))
def test_age_bands_contain_the_age_and_group_90_and_over(age: int, width: int) -> None:
    band = age_band(age, width)
    if age >= 90:
        assert band == "90+"
    else:
        low, high = (int(x) for x in band.split("-"))
        assert low <= age <= high <= 89
        assert high - low < width


def test_age_band_edges() -> None:
    assert age_band(89, 5) == "85-89"
    assert age_band(90, 5) == "90+"
    assert age_band(104, 20) == "90+"
    assert age_band(85, 20) == "80-89"
    assert age_band(None, 5) == "unknown"
    assert age_band(40, None) == "*"


def test_age_is_in_completed_years() -> None:
    assert age_on(dt.date(1980, 3, 4), dt.date(2025, 3, 3)) == 44
    assert age_on(dt.date(1980, 3, 4), dt.date(2025, 3, 4)) == 45
    assert age_on(dt.date(2000, 2, 29), dt.date(2025, 2, 28)) == 24
    assert age_on(dt.date(2000, 2, 29), dt.date(2025, 3, 1)) == 25


def test_patients_over_89_are_exported_as_90_plus(tmp_path: Path) -> None:
    run_export(clinic(Identifiers()), tmp_path / "x", key=secrets.token_bytes(32))
    bands = pq.read_table(tmp_path / "x" / "parquet" / "patients.parquet").column("age_band")
    assert bands.to_pylist().count("90+") == 10
    assert all(b in {"90+", "40-49"} for b in bands.to_pylist())


def test_zip_keeps_three_digits_and_zeroes_sparse_areas() -> None:
    restricted = PROFILE.restricted_zip3
    assert safe_harbor_zip3("02139-4307", restricted) == "021"
    assert safe_harbor_zip3("03601", restricted) == "000"
    assert safe_harbor_zip3("89301", restricted) == "000"
    assert safe_harbor_zip3("ab", restricted) is None
    assert safe_harbor_zip3(None, restricted) is None


def test_a_state_that_is_not_an_iso_code_is_not_exported() -> None:
    timeline = patient(1, Identifiers(), birth_date=dt.date(1980, 1, 1), state="Near Mrs Smith")
    qi = quasi_identifiers(timeline, PROFILE)
    assert qi is not None
    assert qi.state is None


def test_no_research_consent_means_no_quasi_identifiers_and_no_rows() -> None:
    timelines = clinic(Identifiers())
    refusing = patient(99, Identifiers(), birth_date=dt.date(1980, 1, 1), consent=False)
    assert quasi_identifiers(refusing, PROFILE) is None
    decision = gate(timelines, PROFILE)
    batch = deidentify(
        refusing, profile=PROFILE, decision=decision, pseudonymiser=Pseudonymiser(b"k" * 32)
    )
    assert (batch.patients, batch.sessions, batch.observations, batch.alerts) == ((), (), (), ())


def _one_patient(**changes: object) -> tuple[Any, ...]:
    timelines = clinic(Identifiers())
    decision = gate(timelines, PROFILE)
    target = timelines[1]
    return target, decision, target.__class__(**{**_fields(target), **changes})


def _fields(timeline: object) -> dict[str, Any]:
    return {name: getattr(timeline, name) for name in timeline.__struct_fields__}  # type: ignore[attr-defined]


def test_data_changed_after_the_gate_is_refused() -> None:
    target, decision, changed = _one_patient()
    extra = TreatmentSessionRecord(
        session_id=uuid.uuid4(),
        course_id=target.courses[0].course_id,
        modality="ketamine_iv",
        started_at=EPOCH + dt.timedelta(days=60),
    )
    changed = changed.__class__(**{**_fields(changed), "sessions": (*target.sessions, extra)})
    with pytest.raises(CohortChanged):
        deidentify(
            changed, profile=PROFILE, decision=decision, pseudonymiser=Pseudonymiser(b"k" * 32)
        )


def test_time_is_counted_from_course_start_and_from_session_k() -> None:
    course_start = dt.datetime(2024, 11, 2, 8, 0, tzinfo=dt.UTC)
    course_id = uuid.uuid4()
    sessions = tuple(
        TreatmentSessionRecord(
            session_id=uuid.uuid4(),
            course_id=course_id,
            modality="n2o",
            started_at=course_start + dt.timedelta(days=day),
            ended_at=course_start + dt.timedelta(days=day, minutes=60),
            dose=50.0,
            dose_unit="%",
            route="inhalation",
        )
        for day in (0, 3, 7)
    )

    def response(at: dt.datetime) -> ScoredResponseRecord:
        return ScoredResponseRecord(
            response_id=uuid.uuid4(),
            instrument_id="phq9",
            instrument_version="1.0.0",
            scorer_version="1.0.0",
            authored_at=at,
            answers=(ItemAnswerRecord(link_id="phq9-1", value=2),),
            total=None,
        )

    base = patient(1, Identifiers(), birth_date=dt.date(1970, 1, 1))
    timeline = base.__class__(
        **{
            **_fields(base),
            "courses": (
                TreatmentCourseRecord(course_id=course_id, modality="n2o", started_at=course_start),
            ),
            "sessions": sessions,
            "responses": (
                response(course_start - dt.timedelta(hours=12)),  # baseline, before session 1
                response(course_start + dt.timedelta(days=3, hours=24)),  # 24 h after session 2
                response(course_start + dt.timedelta(days=8, hours=2, minutes=30)),
            ),
            "side_effects": (),
            "alerts": (),
        }
    )
    qi = quasi_identifiers(timeline, PROFILE)
    assert qi is not None
    assert qi.age == 54
    assert qi.first_treatment_year == 2024
    decision = gate([timeline] * 1, PROFILE, KAnonymityPolicy(k=1))
    batch = deidentify(
        timeline, profile=PROFILE, decision=decision, pseudonymiser=Pseudonymiser(b"k" * 32)
    )
    places = [
        (
            r.session_index,
            r.hours_since_session,
            r.hours_since_course_start,
            r.day_since_course_start,
        )
        for r in batch.observations
        if r.kind == "item"
    ]
    assert places == [(0, None, -12.0, -1), (2, 24.0, 96.0, 4), (3, 26.5, 194.5, 8)]
    assert [(s.session_index, s.hours_since_previous_session) for s in batch.sessions] == [
        (1, None),
        (2, 72.0),
        (3, 96.0),
    ]
    assert {s.duration_minutes for s in batch.sessions} == {60.0}


def test_alerts_leave_as_codes_and_relative_times_without_notes() -> None:
    base = patient(3, Identifiers(), birth_date=dt.date(1970, 1, 1), sessions=3)
    course = base.courses[0]
    second = base.sessions[1].started_at
    raised = second + dt.timedelta(hours=20)
    note = "Called Perpetua0003 at home, husband answered"
    alerts = (
        AlertRecord(
            alert_id=uuid.uuid4(),
            kind="REBOUND_CONFIRMED",
            severity="priority",
            rule_id="rebound",
            rule_version="core@3+Dr Jones clinic@2",  # a name typed by staff: not a code
            raised_at=raised,
            status="resolved",
            occurrence_count=2,
            last_triggered_at=raised + dt.timedelta(hours=30),
            opened_at=raised + dt.timedelta(minutes=6),
            acknowledged_at=raised + dt.timedelta(minutes=36),
            resolved_at=raised + dt.timedelta(hours=48, minutes=6),
            resolution_note=note,
        ),
        AlertRecord(
            alert_id=uuid.uuid4(),
            kind="SEVERE_SCORE",
            severity="high",
            rule_id="severe-score",
            rule_version="core@3",
            raised_at=course.started_at - dt.timedelta(hours=3),
        ),
    )
    timeline = base.__class__(**{**_fields(base), "alerts": alerts})
    decision = gate([timeline], PROFILE, KAnonymityPolicy(k=1))
    batch = deidentify(
        timeline, profile=PROFILE, decision=decision, pseudonymiser=Pseudonymiser(b"k" * 32)
    )
    before, rebound = sorted(batch.alerts, key=lambda a: a.hours_since_course_start or 0)
    assert (rebound.kind, rebound.severity, rebound.rule_id) == (
        "REBOUND_CONFIRMED",
        "priority",
        "rebound",
    )
    assert rebound.rule_version == "other"
    assert (rebound.status, rebound.occurrence_count) == ("resolved", 2)
    assert (rebound.session_index, rebound.hours_since_session) == (2, 20.0)
    assert rebound.hours_since_course_start == pytest.approx(
        (raised - course.started_at).total_seconds() / 3600, abs=0.01
    )
    assert (rebound.hours_to_last_trigger, rebound.hours_to_acknowledged) == (30.0, 0.5)
    assert rebound.hours_to_resolved == 48.0
    assert rebound.shifted_time is None
    assert (before.session_index, before.hours_since_session) == (0, None)
    assert before.hours_since_course_start == -3.0
    assert before.hours_to_acknowledged is None
    assert before.hours_to_resolved is None
    assert (before.status, before.rule_version) == ("open", "core@3")
    assert note not in repr(batch)
    assert {a.record_id for a in batch.alerts}.isdisjoint({str(a.alert_id) for a in alerts})


@pytest.mark.parametrize(
    ("value", "exported"),
    [
        ("interlude-core@2.1.0+clinic-a@7", "interlude-core@2.1.0+clinic-a@7"),
        ("SUICIDALITY", "SUICIDALITY"),
        ("", "other"),
        ("core@1+Dr. Smith's set@1", "other"),
        ("x" * 129, "other"),
    ],
)
def test_alert_codes_are_codes_or_other(value: str, exported: str) -> None:
    assert export_code(value) == exported


def test_what_a_session_recorded_is_placed_on_that_session() -> None:
    """Measurements and side effects recorded at session k belong to session k, even before it
    began (a pre-dose reading) or after the next one started; an untimed rating has no hours
    since the session. A side effect without a session is placed by its onset."""
    course_id = uuid.uuid4()
    course_start = dt.datetime(2024, 6, 3, 9, 0, tzinfo=dt.UTC)
    sessions = tuple(
        TreatmentSessionRecord(
            session_id=uuid.uuid4(),
            course_id=course_id,
            modality="n2o",
            started_at=course_start + dt.timedelta(days=day),
            ended_at=course_start + dt.timedelta(days=day, minutes=60),
        )
        for day in (0, 2)
    )
    first, second = sessions

    def measured(
        session: TreatmentSessionRecord, measure: str, at: dt.datetime | None, *values: float
    ) -> SessionObservationRecord:
        return SessionObservationRecord(
            observation_id=uuid.uuid4(),
            session_id=session.session_id,
            course_id=course_id,
            measure=measure,  # type: ignore[arg-type]
            values=values,
            measured_at=at,
        )

    def effect(code: str, at: dt.datetime, session_id: uuid.UUID | None) -> SideEffectRecord:
        return SideEffectRecord(
            side_effect_id=uuid.uuid4(),
            code=code,
            severity=2,
            onset_at=at,
            course_id=course_id,
            session_id=session_id,
        )

    held_elsewhere = msgspec.structs.replace(first, session_id=uuid.uuid4())
    base = patient(1, Identifiers(), birth_date=dt.date(1970, 1, 1))
    timeline = msgspec.structs.replace(
        base,
        courses=(
            TreatmentCourseRecord(course_id=course_id, modality="n2o", started_at=course_start),
        ),
        sessions=sessions,
        responses=(),
        alerts=(),
        session_observations=(
            measured(
                second, "blood_pressure", second.started_at - dt.timedelta(minutes=30), 141, 92
            ),
            measured(first, "cadss6", None, 11),
            measured(held_elsewhere, "moaas", course_start, 5),  # not on this time line
        ),
        side_effects=(
            # Recorded at session 1, began after session 2 had started: still session 1's.
            effect("headache", second.started_at + dt.timedelta(hours=1), first.session_id),
            effect("nausea", second.started_at + dt.timedelta(hours=1), None),
        ),
    )
    decision = gate([timeline], PROFILE, KAnonymityPolicy(k=1))
    batch = deidentify(
        timeline, profile=PROFILE, decision=decision, pseudonymiser=Pseudonymiser(b"k" * 32)
    )
    places = [
        (
            r.kind,
            r.variable,
            r.value,
            r.course_index,
            r.session_index,
            r.hours_since_session,
            r.hours_since_course_start,
            r.day_since_course_start,
        )
        for r in batch.observations
    ]
    assert places == [
        ("side_effect", "headache", 2.0, 1, 1, 49.0, 49.0, 2),
        ("side_effect", "nausea", 2.0, 1, 2, 1.0, 49.0, 2),
        ("session_observation", "bp_systolic", 141.0, 1, 2, -0.5, 47.5, 1),
        ("session_observation", "bp_diastolic", 92.0, 1, 2, -0.5, 47.5, 1),
        ("session_observation", "cadss6_total", 11.0, 1, 1, None, 0.0, 0),
    ]
    records = [r.record_id for r in batch.observations]
    assert records[2] == records[3]
    assert len(set(records)) == 4


def test_free_text_is_dropped_by_default_and_exported_only_on_request() -> None:
    timelines = clinic(Identifiers())
    key = Pseudonymiser(b"k" * 32)
    target = timelines[1]
    default = deidentify(
        target, profile=PROFILE, decision=gate(timelines, PROFILE), pseudonymiser=key
    )
    assert not [r for r in default.observations if r.kind == "free_text" or r.value_text]
    opted = DeidentificationProfile(include_free_text=True)
    assert opted.classification == "requires_review"
    batch = deidentify(target, profile=opted, decision=gate(timelines, opted), pseudonymiser=key)
    notes = [r.value_text for r in batch.observations if r.kind == "free_text"]
    assert notes
    assert all(note and "Perpetua" in note for note in notes)


def test_in_fhir_a_text_item_named_note_stays_an_answer_beside_the_patients_note() -> None:
    """A response's rows are its answers, its total, then the patient's note: FHIR tells the
    note (an extension: R4's QuestionnaireResponse has no note) from a text item by place, so
    an item whose linkId happens to be "note" is not taken for it, nor dropped."""
    timelines = clinic(Identifiers())
    opted = DeidentificationProfile(include_free_text=True)
    first = timelines[1].responses[0]
    typed = ItemAnswerRecord(link_id="note", value="typed into the item")
    response = msgspec.structs.replace(first, answers=(*first.answers, typed))
    target = msgspec.structs.replace(timelines[1], responses=(response,))
    rows = deidentify(
        target,
        profile=opted,
        decision=gate(timelines, opted),
        pseudonymiser=Pseudonymiser(b"k" * 32),
    ).observations
    resource = next(
        r for r in fhir.observation_resources(rows) if r["resourceType"] == "QuestionnaireResponse"
    )
    QuestionnaireResponse.model_validate(resource)
    assert resource["item"][-1] == {
        "linkId": "note",
        "answer": [{"valueString": "typed into the item"}],
    }
    notes = [e["valueString"] for e in resource["extension"] if e["url"] == fhir.PATIENT_NOTE]
    assert notes == [first.free_text]


def test_profile_classification() -> None:
    assert DeidentificationProfile().classification == "safe_harbor"
    assert DeidentificationProfile(date_shift=True).classification == "limited_data_set"
    with pytest.raises(ValueError, match="max_date_shift_days"):
        DeidentificationProfile(max_date_shift_days=0)


@given(st.uuids(), st.integers(min_value=1, max_value=1000))
def test_date_shift_is_constant_per_patient_and_within_range(
    patient_id: uuid.UUID, days: int
) -> None:
    pseudonymiser = Pseudonymiser(b"s" * 32)
    shift = pseudonymiser.date_shift_days(patient_id, days)
    assert -days <= shift <= -1
    assert pseudonymiser.date_shift_days(patient_id, days) == shift


def test_the_number_of_courses_is_a_quasi_identifier_the_gate_counts(tmp_path: Path) -> None:
    identifiers = Identifiers()
    alike = [patient(i, identifiers, birth_date=dt.date(1980, 1, 1)) for i in range(10)]
    # The same four sessions, but in two courses: the only patient with n_courses = 2.
    lone = patient(10, identifiers, birth_date=dt.date(1980, 1, 1))
    second = TreatmentCourseRecord(
        course_id=uuid.uuid4(), modality="ketamine_iv", started_at=lone.sessions[2].started_at
    )
    split = msgspec.structs.replace(
        lone,
        courses=(*lone.courses, second),
        sessions=(
            *lone.sessions[:2],
            *(msgspec.structs.replace(s, course_id=second.course_id) for s in lone.sessions[2:]),
        ),
    )
    run_export([*alike, split], tmp_path / "x", key=secrets.token_bytes(32))
    rows = pq.read_table(tmp_path / "x" / "parquet" / "patients.parquet").to_pylist()
    # Every column of the patients table but the pseudonym is shared by at least k patients.
    classes = Counter(tuple(v for name, v in row.items() if name != "study_id") for row in rows)
    assert min(classes.values()) >= KAnonymityPolicy().k
