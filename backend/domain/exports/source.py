"""Where an export's input comes from: the database, read in small groups of patients.

Only patients of the study's clinics whose research consent allows it (and who were not erased)
are read at all. Patients are walked by keyset pagination on their id, a few dozen at a time, each
group in its own short transaction: on SQLite the service has one pooled connection and every
transaction takes the write lock (``backend/db/engine.py``), so an export must never hold it for
long. Between groups the requests of the patient app go first.

Reading is split in two so the event loop stays free (engineering-notes §E.6): `read_group`
(async, I/O only) fetches ciphertexts and the group's key rows (one query); the CPU work, meant
for `anyio.to_thread.run_sync`, is `SealedGroup.open` (decrypt and build the pipeline's
`PatientTimeline`s: the gate pass) or `SealedGroup.deidentify` (the write pass: decrypt and
de-identify straight into columns, `columnar.py`). Names, contact details and record numbers are
never decrypted: the export does not need them, so they never exist in the export's memory.
"""

import uuid
from collections.abc import Callable, Sequence
from datetime import date
from operator import itemgetter
from typing import Any, Final, cast

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
from sqlalchemy import Row, String, Table, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.alert import Alert
from backend.db.models.patient import Patient
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import TreatmentCourse, TreatmentSession
from backend.domain.exports.columnar import ObservationColumns
from backend.domain.exports.deid import (
    DeidentificationProfile,
    Pseudonymiser,
    deidentify_prepared,
    prepare_patient,
)
from backend.domain.exports.driver_values import as_uuid, utc_instant, uuid_bytes, uuid_text
from backend.domain.exports.kanon import KAnonymityDecision
from backend.domain.exports.records import (
    AlertRecord,
    DeidentifiedBatch,
    ItemAnswerRecord,
    Modality,
    PatientRecord,
    PatientTimeline,
    Route,
    ScoredResponseRecord,
    TreatmentCourseRecord,
    TreatmentSessionRecord,
    merge_batches,
)
from backend.keyring.service import Keyring, OwnerKeys

PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
RESPONSES: Final = cast(Table, QuestionnaireResponse.__table__)  # type: ignore[attr-defined]
COURSES: Final = cast(Table, TreatmentCourse.__table__)  # type: ignore[attr-defined]
SESSIONS: Final = cast(Table, TreatmentSession.__table__)  # type: ignore[attr-defined]
ALERTS: Final = cast(Table, Alert.__table__)  # type: ignore[attr-defined]
_p = PATIENTS.c
_r = RESPONSES.c
_co = COURSES.c
_se = SESSIONS.c
_al = ALERTS.c

RESPONSES_TABLE: Final = "questionnaire_responses"
PATIENTS_TABLE: Final = "patients"
DEFAULT_GROUP_PATIENTS: Final = 64
RESPONSE_PAGE_ROWS: Final = 20_000

# The treatment tables name modalities as the clinic does; the export's codebook as records.py.
_MODALITY: Final[dict[str, Modality]] = {
    "n2o": "n2o",
    "iv_ketamine": "ketamine_iv",
    "esketamine": "esketamine_in",
}
_ROUTE: Final[dict[str, Route]] = {
    "n2o": "inhalation",
    "iv_ketamine": "intravenous",
    "esketamine": "intranasal",
}


class _StoredAnswer(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """An answer as `responses.service` stores it (msgpack of `questionnaires.answers.Answer`)."""

    link_id: str
    value: bool | int | float | str


class _StoredScore(msgspec.Struct, frozen=True, gc=False):
    """The fields of `questionnaires.scoring.Score` an export uses; the rest is skipped unread."""

    total: int | None
    band: str | None = None
    prorated: bool = False


_decode_answers = msgspec.msgpack.Decoder(tuple[_StoredAnswer, ...]).decode
_decode_score = msgspec.msgpack.Decoder(_StoredScore).decode
_decode_many_answers = msgspec.msgpack.Decoder(list[tuple[_StoredAnswer, ...]]).decode
_decode_many_scores = msgspec.msgpack.Decoder(list[_StoredScore]).decode


def _msgpack_array(items: list[bytes]) -> bytes:
    """Many msgpack documents as one msgpack array (an array32 header, then the documents):
    one decoder call for a whole group instead of one per field."""
    return b"\xdd" + len(items).to_bytes(4, "big") + b"".join(items)


def consenting(clinic_ids: Sequence[uuid.UUID]) -> Any:
    """Who may be exported at all: consenting, not erased, in one of the study's clinics."""
    return (
        _p.clinic_id.in_(list(clinic_ids)),
        _p.research_consent.is_(True),
        _p.status != "erased",
    )


class SealedPatient(msgspec.Struct, frozen=True, kw_only=True):
    patient_id: uuid.UUID
    clinic_id: uuid.UUID
    time_zone: str
    date_of_birth_ct: bytes | None
    keys: OwnerKeys


class SealedGroup(msgspec.Struct, frozen=True, kw_only=True):
    """A few patients' data as stored: ciphertexts plus the key rows that open them."""

    patients: tuple[SealedPatient, ...]
    courses: dict[uuid.UUID, list[TreatmentCourseRecord]]
    sessions: dict[uuid.UUID, list[TreatmentSessionRecord]]
    alerts: dict[uuid.UUID, list[AlertRecord]]
    responses: dict[uuid.UUID, list[Row[Any]]]

    @property
    def response_count(self) -> int:
        return sum(len(rows) for rows in self.responses.values())

    def open(self) -> list[PatientTimeline]:
        """Decrypt and build the timelines (CPU only: run it in a worker thread)."""
        return [self._timeline(patient) for patient in self.patients]

    def decrypt_only(self) -> int:
        """Decrypt every response field and nothing else (the benchmark's floor); returns how
        many responses were opened."""
        opened = 0
        for patient in self.patients:
            rows = self.responses.get(patient.patient_id, ())
            _open_responses(patient.keys, [uuid_text(row.id) for row in rows], rows)
            opened += len(rows)
        return opened

    def deidentify(
        self,
        *,
        profile: DeidentificationProfile,
        decision: KAnonymityDecision,
        pseudonymiser: Pseudonymiser,
        observations_schema: pa.Schema,
    ) -> tuple[DeidentifiedBatch, pa.RecordBatch | None, set[tuple[str, str, str]]]:
        """The write pass for this group: the patients, sessions and alerts rows, the
        observations as one Arrow batch, and the (instrument, version, scorer version) seen.
        Same rows as `deid.deidentify` over `open()`, built without a Python object per row."""
        columns = ObservationColumns(profile, pseudonymiser)
        batches: list[DeidentifiedBatch] = []
        for patient in self.patients:
            timeline = self._timeline(patient, with_responses=False)
            context = prepare_patient(
                timeline, profile=profile, decision=decision, pseudonymiser=pseudonymiser
            )
            if context is None:
                continue
            batches.append(
                deidentify_prepared(timeline, context, profile=profile, pseudonymiser=pseudonymiser)
            )
            stored = self.responses.get(patient.patient_id)
            if not stored:
                continue
            # Sorted by when answered, as `deidentify` orders them (stable for equal times).
            ordered = sorted(((utc_instant(row.authored_at), row) for row in stored), key=_first)
            rows = [row for _, row in ordered]
            answers, scores = _open_responses(
                patient.keys, [uuid_text(row.id) for row in rows], rows
            )
            columns.add_patient(
                context,
                response_ids=[uuid_bytes(row.id) for row in rows],
                authored=[at for at, _ in ordered],
                instrument_ids=[row.instrument_id for row in rows],
                instrument_versions=[row.instrument_version for row in rows],
                scorer_versions=[row.scorer_version for row in rows],
                answers=_decode_many_answers(_msgpack_array(answers)),
                scores=_decode_many_scores(_msgpack_array(scores)),
            )
        return (
            merge_batches(batches),
            columns.batch(observations_schema),
            columns.instruments,
        )

    def _timeline(self, patient: SealedPatient, *, with_responses: bool = True) -> PatientTimeline:
        keys = patient.keys
        birth_date = None
        if patient.date_of_birth_ct is not None:
            birth_date = date.fromisoformat(
                keys.decrypt(
                    table=PATIENTS_TABLE,
                    column="date_of_birth_ciphertext",
                    row_id=str(patient.patient_id),
                    blob=bytes(patient.date_of_birth_ct),
                ).decode("utf-8")
            )
        return PatientTimeline(
            patient=PatientRecord(
                patient_id=patient.patient_id,
                clinic_id=patient.clinic_id,
                research_consent=True,
                birth_date=birth_date,
                # Not recorded by the service (yet): exported as unknown, never guessed.
                sex="unknown",
                state=None,
                zip_code=None,
                time_zone=patient.time_zone,
            ),
            courses=tuple(self.courses.get(patient.patient_id, ())),
            sessions=tuple(self.sessions.get(patient.patient_id, ())),
            alerts=tuple(self.alerts.get(patient.patient_id, ())),
            responses=_open_records(keys, self.responses.get(patient.patient_id, []))
            if with_responses
            else (),
        )


_first = itemgetter(0)


def _open_responses(
    keys: OwnerKeys, row_ids: list[str], rows: Sequence[Row[Any]]
) -> tuple[list[bytes], list[bytes]]:
    """The answers and score plaintexts of one patient's response rows."""
    answers = keys.decrypt_many(
        table=RESPONSES_TABLE,
        column="answers_ct",
        row_ids=row_ids,
        blobs=[row.answers_ct for row in rows],
    )
    scores = keys.decrypt_many(
        table=RESPONSES_TABLE,
        column="score_ct",
        row_ids=row_ids,
        blobs=[row.score_ct for row in rows],
    )
    return answers, scores


def _open_records(keys: OwnerKeys, rows: list[Row[Any]]) -> tuple[ScoredResponseRecord, ...]:
    answers, scores = _open_responses(keys, [uuid_text(row.id) for row in rows], rows)
    return tuple(
        _response_record(row, _decode_answers(a), _decode_score(s))
        for row, a, s in zip(rows, answers, scores, strict=True)
    )


def _response_record(
    row: Row[Any], answers: tuple[_StoredAnswer, ...], score: _StoredScore
) -> ScoredResponseRecord:
    return ScoredResponseRecord(
        response_id=as_uuid(row.id),
        instrument_id=row.instrument_id,
        instrument_version=row.instrument_version,
        scorer_version=row.scorer_version,
        authored_at=utc_instant(row.authored_at),
        answers=tuple(ItemAnswerRecord(link_id=a.link_id, value=a.value) for a in answers),
        total=score.total,
        band=score.band,
        prorated=score.prorated,
    )


async def read_group(
    session: AsyncSession,
    keyring: Keyring,
    clinic_ids: Sequence[uuid.UUID],
    *,
    after: uuid.UUID | None,
    limit: int = DEFAULT_GROUP_PATIENTS,
    with_responses: bool,
    only: Callable[[uuid.UUID], bool] | None = None,
) -> tuple[SealedGroup, uuid.UUID | None]:
    """The next `limit` consenting patients after `after` (by id) with their treatment history,
    and with their responses when `with_responses`. `only` filters patients out after paging
    (the second pass skips patients the k-anonymity gate never saw). Returns the group and the
    cursor of the next page, None after the last."""
    connection = await session.connection()
    statement = select(_p.id, _p.clinic_id, _p.time_zone, _p.date_of_birth_ciphertext).where(
        *consenting(clinic_ids)
    )
    if after is not None:
        statement = statement.where(_p.id > after)
    rows = (await connection.execute(statement.order_by(_p.id).limit(limit))).all()
    wanted = [row for row in rows if only is None or only(row.id)]
    keys = await keyring.owners_keys(connection, [row.id for row in wanted])
    patients = [
        SealedPatient(
            patient_id=row.id,
            clinic_id=row.clinic_id,
            time_zone=row.time_zone,
            date_of_birth_ct=row.date_of_birth_ciphertext,
            keys=keys[row.id],
        )
        for row in wanted
    ]
    ids = [p.patient_id for p in patients]
    courses, sessions = await _treatment(connection, ids)
    alerts = await _alerts(connection, ids)
    responses = await _responses(connection, ids) if with_responses and ids else {}
    group = SealedGroup(
        patients=tuple(patients),
        courses=courses,
        sessions=sessions,
        alerts=alerts,
        responses=responses,
    )
    # A short page is the last one; the cursor moves past filtered-out patients too.
    return group, (rows[-1].id if len(rows) == limit else None)


async def _treatment(
    connection: AsyncConnection, ids: list[uuid.UUID]
) -> tuple[
    dict[uuid.UUID, list[TreatmentCourseRecord]], dict[uuid.UUID, list[TreatmentSessionRecord]]
]:
    courses: dict[uuid.UUID, list[TreatmentCourseRecord]] = {}
    sessions: dict[uuid.UUID, list[TreatmentSessionRecord]] = {}
    if not ids:
        return courses, sessions
    known: set[uuid.UUID] = set()
    course_rows = await connection.execute(
        select(_co.id, _co.patient_id, _co.modality, _co.started_at)
        .where(_co.patient_id.in_(ids), _co.started_at.is_not(None))
        .order_by(_co.patient_id, _co.started_at, _co.id)
    )
    for row in course_rows.all():
        known.add(row.id)
        courses.setdefault(row.patient_id, []).append(
            TreatmentCourseRecord(
                course_id=row.id, modality=_MODALITY[row.modality], started_at=row.started_at
            )
        )
    session_rows = await connection.execute(
        select(
            _se.id,
            _se.course_id,
            _se.patient_id,
            _se.modality,
            _se.started_at,
            _se.ended_at,
            _se.n2o_concentration_percent,
            _se.ketamine_mg_per_kg,
            _se.esketamine_mg,
        )
        .where(
            _se.patient_id.in_(ids),
            _se.started_at.is_not(None),
            _se.status.in_(("started", "completed")),
        )
        .order_by(_se.patient_id, _se.started_at, _se.id)
    )
    for srow in session_rows.all():
        row = cast(Any, srow)
        if row.course_id not in known:
            continue
        dose, unit = _dose(row)
        sessions.setdefault(row.patient_id, []).append(
            TreatmentSessionRecord(
                session_id=row.id,
                course_id=row.course_id,
                modality=_MODALITY[row.modality],
                started_at=row.started_at,
                ended_at=row.ended_at,
                dose=dose,
                dose_unit=unit,
                route=_ROUTE[row.modality],
            )
        )
    return courses, sessions


async def _alerts(
    connection: AsyncConnection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[AlertRecord]]:
    """The patients' alerts: plain codes and times only. `resolution_ct` (the clinician's note)
    and the occurrences' evidence are not even read. Read in both passes: rare alert kinds are
    quasi-identifiers for the k-anonymity gate."""
    found: dict[uuid.UUID, list[AlertRecord]] = {}
    if not ids:
        return found
    rows = await connection.execute(
        select(
            _al.id,
            _al.patient_id,
            _al.kind,
            _al.severity,
            _al.rule_id,
            _al.parameter_version,
            _al.status,
            _al.occurrence_count,
            _al.first_triggered_at,
            _al.last_triggered_at,
            _al.opened_at,
            _al.acknowledged_at,
            _al.resolved_at,
        )
        .where(_al.patient_id.in_(ids))
        .order_by(_al.patient_id, _al.first_triggered_at, _al.id)
    )
    for row in rows.all():
        found.setdefault(row.patient_id, []).append(
            AlertRecord(
                alert_id=row.id,
                kind=row.kind,
                severity=row.severity,
                rule_id=row.rule_id,
                rule_version=row.parameter_version,
                raised_at=row.first_triggered_at,
                status=row.status,
                occurrence_count=row.occurrence_count,
                last_triggered_at=row.last_triggered_at,
                opened_at=row.opened_at,
                acknowledged_at=row.acknowledged_at,
                resolved_at=row.resolved_at,
            )
        )
    return found


def _dose(row: Any) -> tuple[float | None, str | None]:
    if row.modality == "n2o" and row.n2o_concentration_percent is not None:
        return float(row.n2o_concentration_percent), "%"
    if row.modality == "iv_ketamine" and row.ketamine_mg_per_kg is not None:
        return float(row.ketamine_mg_per_kg), "mg/kg"
    if row.modality == "esketamine" and row.esketamine_mg is not None:
        return float(row.esketamine_mg), "mg"
    return None, None


# Response columns read as the driver returns them: SQLAlchemy's per-value conversions (a
# `uuid.UUID` per id, a datetime per timestamp) cost as much as decrypting the row; the worker
# thread converts only what it needs (`driver_values.uuid_text`, `utc_instant`).
_RAW: Final = String()
_RESPONSE_COLUMNS: Final = (
    type_coerce(_r.id, _RAW).label("id"),
    type_coerce(_r.patient_id, _RAW).label("patient_id"),
    _r.instrument_id,
    _r.instrument_version,
    _r.scorer_version,
    type_coerce(_r.authored_at, _RAW).label("authored_at"),
    _r.answers_ct,
    _r.score_ct,
)


async def _responses(
    connection: AsyncConnection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Row[Any]]]:
    """The group's responses in keyset pages on (patient_id, id), so no single result set is
    larger than a page. Rows hold raw driver values (`_RESPONSE_COLUMNS`)."""
    found: dict[uuid.UUID, list[Row[Any]]] = {}
    after: tuple[uuid.UUID, uuid.UUID] | None = None
    while True:
        statement = select(*_RESPONSE_COLUMNS).where(_r.patient_id.in_(ids))
        if after is not None:
            statement = statement.where(
                (_r.patient_id > after[0]) | ((_r.patient_id == after[0]) & (_r.id > after[1]))
            )
        page = (
            await connection.execute(
                statement.order_by(_r.patient_id, _r.id).limit(RESPONSE_PAGE_ROWS)
            )
        ).all()
        raw_owner: object = None
        rows: list[Row[Any]] = []
        for item in page:
            # Ordered by patient: convert the owner's id once per patient, not once per row.
            if item.patient_id != raw_owner:
                raw_owner = item.patient_id
                rows = found.setdefault(as_uuid(raw_owner), [])
            rows.append(item)
        if len(page) < RESPONSE_PAGE_ROWS:
            return found
        after = (as_uuid(page[-1].patient_id), as_uuid(page[-1].id))


async def count_cohort(
    connection: AsyncConnection, clinic_ids: Sequence[uuid.UUID]
) -> tuple[int, int]:
    """(consenting patients, their responses): the denominators of an export's progress."""
    patients = await connection.scalar(
        select(func.count()).select_from(PATIENTS).where(*consenting(clinic_ids))
    )
    responses = await connection.scalar(
        select(func.count())
        .select_from(RESPONSES.join(PATIENTS, _r.patient_id == _p.id))
        .where(*consenting(clinic_ids))
    )
    return int(patients or 0), int(responses or 0)
