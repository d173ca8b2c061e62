"""Where an export's input comes from: the database, read in small groups of patients.

Only patients of the study's clinics whose research consent allows it (and who were not erased)
are read at all. Patients are walked by keyset pagination on their id, a few dozen at a time, each
group in its own short transaction: on SQLite the service has one pooled connection and every
transaction takes the write lock (``backend/db/engine.py``), so an export must never hold it for
long. Between groups the requests of the patient app go first.

Reading is split in two so the event loop stays free (engineering-notes §E.6): `read_group`
and `read_responses` (async, I/O only) fetch ciphertexts and the group's key rows (one query);
the CPU work, meant for `anyio.to_thread.run_sync`, is `SealedGroup.open` (decrypt and build the
pipeline's `PatientTimeline`s: the gate pass) or `SealedGroup.prepare` and
`PreparedGroup.observations` (the write pass: decrypt and de-identify straight into columns,
`columnar.py`). Responses come in keyset pages of at most `RESPONSE_PAGE_ROWS`, already in the
order they are written, so the write pass holds one page (and the next, being read) whatever
the size of the export or of one patient's history; what it keeps beyond that is per patient
of the current group. Names, contact details and record numbers are
never decrypted: the export does not need them, so they never exist in the export's memory.
"""

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from functools import partial
from typing import Any, Final, cast

import msgspec
import pyarrow as pa
from sqlalchemy import Select, String, Table, bindparam, func, null, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.alert import Alert
from backend.db.models.patient import Patient
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import TreatmentCourse, TreatmentSession
from backend.db.sqlite_driver import is_one_hop, run_in_driver_thread
from backend.domain.exports.columnar import ObservationColumns, instants_us
from backend.domain.exports.deid import (
    DeidentificationProfile,
    PatientContext,
    Pseudonymiser,
    deidentify_prepared,
    prepare_patient,
    session_rows,
)
from backend.domain.exports.driver_values import (
    as_uuid,
    utc_instant,
    utc_instants,
    uuid_bytes_of,
    uuid_texts,
)
from backend.domain.exports.kanon import KAnonymityDecision
from backend.domain.exports.records import (
    AlertRecord,
    DeidentifiedBatch,
    Modality,
    ObservationRow,
    PatientRecord,
    PatientTimeline,
    Route,
    TreatmentCourseRecord,
    TreatmentSessionRecord,
    merge_batches,
)
from backend.domain.exports.session_observations import SealedObservations, open_observations
from backend.domain.exports.stored_answers import answer_columns, decode_answers, msgpack_array
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
RESPONSE_PAGE_ROWS: Final = 4_096
"""Responses per page of the write pass: ~41,000 observation rows (a PHQ-9 makes ten), about one
Parquet row group."""

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
_RAW: Final = String()
"""Read as the driver returns it (`type_coerce`): no SQLAlchemy conversion per value."""


class _StoredScore(msgspec.Struct, frozen=True, gc=False):
    """The fields of `questionnaires.scoring.Score` an export uses; the rest is skipped unread."""

    total: int | None
    band: str | None = None
    prorated: bool = False
    missing_items: tuple[str, ...] = ()
    """Usually empty: decoding it costs next to nothing, and it is what makes a total partial."""


_decode_many_scores = msgspec.msgpack.Decoder(list[_StoredScore]).decode


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
    """A few patients as stored, without their responses (those are read in pages:
    `read_responses`): ciphertexts plus the key rows that open them."""

    patients: tuple[SealedPatient, ...]
    courses: dict[uuid.UUID, list[TreatmentCourseRecord]]
    sessions: dict[uuid.UUID, list[TreatmentSessionRecord]]
    alerts: dict[uuid.UUID, list[AlertRecord]]
    observations: dict[uuid.UUID, list[SealedObservations]] = msgspec.field(default_factory=dict)
    """The exported sessions' clinic-entered observations, opened by the write pass only."""

    @property
    def patient_ids(self) -> list[uuid.UUID]:
        return [patient.patient_id for patient in self.patients]

    def open(self) -> list[PatientTimeline]:
        """Decrypt and build the timelines, without responses (the gate pass; CPU only: run it
        in a worker thread)."""
        return [self._timeline(patient) for patient in self.patients]

    def decrypt_only(self, page: "ResponsePage") -> int:
        """Decrypt the fields of a page of this group's responses and nothing else (the
        benchmark's floor); returns how many responses were opened."""
        keys = {patient.patient_id: patient.keys for patient in self.patients}
        ids = page.ids
        for owner, start, end in _runs(page.patient_ids):
            _open_responses(
                keys[owner],
                uuid_texts(ids[start:end]),
                page.answers_ct[start:end],
                page.scores_ct[start:end],
            )
        return len(page)

    def prepare(
        self,
        *,
        profile: DeidentificationProfile,
        decision: KAnonymityDecision,
        pseudonymiser: Pseudonymiser,
    ) -> tuple[DeidentifiedBatch, "PreparedGroup", DeidentifiedBatch]:
        """The write pass's first step for this group: the patients, sessions and alerts rows;
        what each exported patient's observations share (`PreparedGroup`); and the observation
        rows of what the clinic recorded at their sessions (measurements and side effects: read
        with `observations=True`; the export writes them after every response)."""
        batches: list[DeidentifiedBatch] = []
        exported: dict[uuid.UUID, tuple[PatientContext, OwnerKeys]] = {}
        recorded: list[ObservationRow] = []
        for patient in self.patients:
            timeline = self._timeline(patient)
            context = prepare_patient(
                timeline, profile=profile, decision=decision, pseudonymiser=pseudonymiser
            )
            if context is None:
                continue
            batches.append(
                deidentify_prepared(timeline, context, profile=profile, pseudonymiser=pseudonymiser)
            )
            exported[patient.patient_id] = (context, patient.keys)
            sealed = self.observations.get(patient.patient_id)
            if sealed:
                measured, side_effects = open_observations(patient.keys, sealed)
                observed = msgspec.structs.replace(
                    timeline,
                    session_observations=tuple(measured),
                    side_effects=tuple(side_effects),
                )
                recorded += session_rows(
                    observed, context, profile=profile, pseudonymiser=pseudonymiser
                )
        return (
            merge_batches(batches),
            PreparedGroup(exported=exported, profile=profile, pseudonymiser=pseudonymiser),
            DeidentifiedBatch(observations=tuple(recorded)),
        )

    def _timeline(self, patient: SealedPatient) -> PatientTimeline:
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
        )


class PreparedGroup:
    """A group's exported patients, ready for their responses: pages of them become
    observation batches, each bounded by the page, whatever the size of the export."""

    def __init__(
        self,
        *,
        exported: dict[uuid.UUID, tuple[PatientContext, OwnerKeys]],
        profile: DeidentificationProfile,
        pseudonymiser: Pseudonymiser,
    ) -> None:
        self._exported = exported
        self._profile = profile
        self._pseudonymiser = pseudonymiser

    def observations(
        self, page: "ResponsePage", schema: pa.Schema
    ) -> tuple[pa.RecordBatch | None, set[tuple[str, str, str]]]:
        """A page of responses (`read_responses`: by patient, then when answered) as
        observation rows, and the (instrument, version, scorer version) seen. The same rows,
        in the same order, as `deid.deidentify` builds one object at a time."""
        columns = ObservationColumns(self._profile, self._pseudonymiser)
        if not len(page):
            return None, columns.instruments
        ids = page.ids
        authored = instants_us(utc_instants(page.authored))
        opened: list[tuple[PatientContext, int, int, list[bytes]]] = []
        answers: list[bytes] = []
        for owner, start, end in _runs(page.patient_ids):
            found = self._exported.get(owner)
            if found is None:
                continue  # not in the export (suppressed by the gate)
            context, keys = found
            run_answers, scores = _open_responses(
                keys,
                uuid_texts(ids[start:end]),
                page.answers_ct[start:end],
                page.scores_ct[start:end],
            )
            answers += run_answers
            opened.append((context, start, end, scores))
        # The page's answers read at once, as columns when they are all numbers in the compact
        # form (`stored_answers`), else decoded patient by patient.
        read = answer_columns(answers) if answers else None
        at = 0
        for context, start, end, scores in opened:
            n = end - start
            columns.add_patient(
                context,
                response_ids=uuid_bytes_of(ids[start:end]),
                authored=authored[start:end],
                instrument_ids=page.instrument_ids[start:end],
                instrument_versions=page.instrument_versions[start:end],
                scorer_versions=page.scorer_versions[start:end],
                answers=decode_answers(answers[at : at + n])
                if read is None
                else read.slice(at, at + n),
                scores=_decode_many_scores(msgpack_array(scores)),
            )
            at += n
        return columns.batch(schema), columns.instruments


def _runs(owners: Sequence[object]) -> list[tuple[uuid.UUID, int, int]]:
    """(patient, start, end) of each run of one patient's rows (pages are ordered by patient)."""
    runs: list[tuple[uuid.UUID, int, int]] = []
    start = 0
    for end in range(1, len(owners) + 1):
        if end == len(owners) or owners[end] != owners[start]:
            runs.append((as_uuid(owners[start]), start, end))
            start = end
    return runs


def _open_responses(
    keys: OwnerKeys,
    row_ids: Sequence[str],
    answers_ct: Sequence[bytes],
    scores_ct: Sequence[bytes],
) -> list[list[bytes]]:
    """The answers and score plaintexts of one patient's responses (each row id encoded once
    for both of its fields)."""
    return keys.decrypt_columns(
        table=RESPONSES_TABLE,
        columns=(("answers_ct", answers_ct), ("score_ct", scores_ct)),
        row_ids=row_ids,
    )


async def read_group(
    session: AsyncSession,
    keyring: Keyring,
    clinic_ids: Sequence[uuid.UUID],
    *,
    after: uuid.UUID | None,
    limit: int = DEFAULT_GROUP_PATIENTS,
    only: Callable[[uuid.UUID], bool] | None = None,
    observations: bool = False,
) -> tuple[SealedGroup, uuid.UUID | None]:
    """The next `limit` consenting patients after `after` (by id) with their treatment history
    (their responses: `read_responses`; their sessions' observations too with `observations`).
    `only` filters patients out after paging (the second pass skips patients the k-anonymity
    gate never saw). Returns the group and the cursor of the next page, None after the last."""
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
    courses, sessions, sealed = await _treatment(connection, ids, observations=observations)
    alerts = await _alerts(connection, ids)
    group = SealedGroup(
        patients=tuple(patients),
        courses=courses,
        sessions=sessions,
        alerts=alerts,
        observations=sealed,
    )
    # A short page is the last one; the cursor moves past filtered-out patients too.
    return group, (rows[-1].id if len(rows) == limit else None)


# The treatment history as the driver returns it (`_RAW`, as the response pages): SQLAlchemy's
# conversions (a `uuid.UUID` per id, a datetime per timestamp through a type decorator) and its
# `Row` attributes were most of reading a group's history, which both passes read. Each patient's
# id is converted once, a session's course id is its course's, the rest as `driver_values` does:
# the same values (`tests/exports/test_treatment_history.py` compares the two reads).
_TREATMENT_IDS: Final = bindparam("ids", expanding=True, type_=_co.patient_id.type)
_COURSES: Final = (
    select(
        type_coerce(_co.id, _RAW).label("id"),
        type_coerce(_co.patient_id, _RAW).label("patient_id"),
        _co.modality,
        type_coerce(_co.started_at, _RAW).label("started_at"),
    )
    .where(_co.patient_id.in_(_TREATMENT_IDS), _co.started_at.is_not(None))
    .order_by(_co.patient_id, _co.started_at, _co.id)
)


def _sessions_statement(observations: bool) -> Select[Any]:
    return (
        select(
            type_coerce(_se.id, _RAW).label("id"),
            type_coerce(_se.course_id, _RAW).label("course_id"),
            type_coerce(_se.patient_id, _RAW).label("patient_id"),
            _se.modality,
            type_coerce(_se.started_at, _RAW).label("started_at"),
            type_coerce(_se.ended_at, _RAW).label("ended_at"),
            _se.n2o_concentration_percent,
            _se.ketamine_mg_per_kg,
            _se.esketamine_mg,
            # Ciphertexts only when they are to be opened (the write pass).
            (_se.observations_ct if observations else null()).label("observations_ct"),
        )
        .where(
            _se.patient_id.in_(_TREATMENT_IDS),
            _se.started_at.is_not(None),
            _se.status.in_(("started", "completed")),
        )
        .order_by(_se.patient_id, _se.started_at, _se.id)
    )


_SESSIONS: Final = {wanted: _sessions_statement(wanted) for wanted in (False, True)}


async def _treatment(
    connection: AsyncConnection, ids: list[uuid.UUID], *, observations: bool
) -> tuple[
    dict[uuid.UUID, list[TreatmentCourseRecord]],
    dict[uuid.UUID, list[TreatmentSessionRecord]],
    dict[uuid.UUID, list[SealedObservations]],
]:
    courses: dict[uuid.UUID, list[TreatmentCourseRecord]] = {}
    sessions: dict[uuid.UUID, list[TreatmentSessionRecord]] = {}
    sealed: dict[uuid.UUID, list[SealedObservations]] = {}
    if not ids:
        return courses, sessions, sealed
    # By driver value (SQLite's hex text, PostgreSQL's UUID): each patient converted once.
    patients: dict[Any, uuid.UUID] = {}

    def patient_of(value: Any) -> uuid.UUID:
        found = patients.get(value)
        if found is None:
            found = patients[value] = as_uuid(value)
        return found

    known: dict[Any, uuid.UUID] = {}
    """The courses read, by their id's driver value: a session of another course is left out."""
    # Rows unpacked as tuples: a `Row` attribute costs ~0.3 us, a dozen of them per session.
    for course, patient, modality, started_at in (
        await connection.execute(_COURSES, {"ids": ids})
    ).all():
        course_id = known[course] = as_uuid(course)
        courses.setdefault(patient_of(patient), []).append(
            TreatmentCourseRecord(
                course_id=course_id,
                modality=_MODALITY[modality],
                started_at=utc_instant(started_at),
            )
        )
    for (
        session,
        course,
        patient,
        modality,
        started_at,
        ended_at,
        n2o_percent,
        ketamine_mg_per_kg,
        esketamine_mg,
        observations_ct,
    ) in (await connection.execute(_SESSIONS[observations], {"ids": ids})).all():
        of_course = known.get(course)
        if of_course is None:
            continue
        course_id = of_course
        session_id = as_uuid(session)
        patient_id = patient_of(patient)
        dose, unit = _dose(modality, n2o_percent, ketamine_mg_per_kg, esketamine_mg)
        sessions.setdefault(patient_id, []).append(
            TreatmentSessionRecord(
                session_id=session_id,
                course_id=course_id,
                modality=_MODALITY[modality],
                started_at=utc_instant(started_at),
                ended_at=None if ended_at is None else utc_instant(ended_at),
                dose=dose,
                dose_unit=unit,
                route=_ROUTE[modality],
            )
        )
        if observations_ct is not None:
            sealed.setdefault(patient_id, []).append(
                SealedObservations(
                    session_id=session_id, course_id=course_id, ciphertext=observations_ct
                )
            )
    return courses, sessions, sealed


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


def _dose(
    modality: str, n2o_percent: Any, ketamine_mg_per_kg: Any, esketamine_mg: Any
) -> tuple[float | None, str | None]:
    if modality == "n2o" and n2o_percent is not None:
        return float(n2o_percent), "%"
    if modality == "iv_ketamine" and ketamine_mg_per_kg is not None:
        return float(ketamine_mg_per_kg), "mg/kg"
    if modality == "esketamine" and esketamine_mg is not None:
        return float(esketamine_mg), "mg"
    return None, None


# Response columns read as the driver returns them: SQLAlchemy's per-value conversions (a
# `uuid.UUID` per id, a datetime per timestamp) cost as much as decrypting the row; the worker
# thread converts only what it needs (`driver_values.uuid_text`, `utc_instant`).
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
_ORDER: Final = (_r.patient_id, _r.authored_at, _r.id)
_RAW_KEYS: Final = tuple(type_coerce(column, _RAW) for column in _ORDER)
_FETCH_CHUNK: Final = 256
"""Rows taken from the SQLite cursor at a time and turned into columns: a page's rows never
all exist as tuples at once, so they never outlive the young garbage-collector generation
(thousands of surviving rows per page made full collections of the whole heap a sixth of
the export's CPU)."""


ResponseCursor = tuple[Any, Any, Any]
"""(patient id, answered at, response id) of the last response of a page, as its keyset
comparison takes them (driver values on SQLite, typed values otherwise)."""


class ResponsePage:
    """A page of responses as columns of driver values (`_RESPONSE_COLUMNS`), one entry per
    response in every column, in the order they are written (by patient, then when answered)."""

    __slots__ = (
        "answers_ct",
        "authored",
        "ids",
        "instrument_ids",
        "instrument_versions",
        "patient_ids",
        "scorer_versions",
        "scores_ct",
    )

    def __init__(self, columns: Sequence[Sequence[Any]]) -> None:
        (
            self.ids,
            self.patient_ids,
            self.instrument_ids,
            self.instrument_versions,
            self.scorer_versions,
            self.authored,
            self.answers_ct,
            self.scores_ct,
        ) = columns

    def __len__(self) -> int:
        return len(self.ids)


def _page_statement(
    keys: Sequence[Any], patient_ids: list[Any], after: ResponseCursor | None, limit: int
) -> Select[Any]:
    patient, at, row = keys
    statement = select(*_RESPONSE_COLUMNS).where(patient.in_(patient_ids))
    if after is not None:
        last_patient, last_at, last_row = after
        statement = statement.where(
            (patient > last_patient)
            | ((patient == last_patient) & ((at > last_at) | ((at == last_at) & (row > last_row))))
        )
    return statement.order_by(*_ORDER).limit(limit)


def _fetch_columns(
    sql: str, parameters: Sequence[Any], connection: sqlite3.Connection
) -> list[list[Any]]:
    cursor = connection.execute(sql, parameters)
    try:
        columns: list[list[Any]] = [[] for _ in _RESPONSE_COLUMNS]
        while chunk := cursor.fetchmany(_FETCH_CHUNK):
            for column, values in zip(columns, zip(*chunk, strict=True), strict=True):
                column += values
        return columns
    finally:
        cursor.close()


async def _sqlite_page(
    connection: AsyncConnection,
    patient_ids: Sequence[uuid.UUID],
    after: ResponseCursor | None,
    limit: int,
) -> ResponsePage:
    """The page straight from the sqlite3 cursor in its worker thread, as columns: compared
    as stored (the ids' and times' text, which orders as the values do), so nothing is
    converted either way."""
    dialect = connection.dialect
    stored = _r.patient_id.type.bind_processor(dialect)
    ids = [stored(p) if stored is not None else p for p in patient_ids]
    compiled = _page_statement(_RAW_KEYS, ids, after, limit).compile(
        dialect=dialect, compile_kwargs={"render_postcompile": True}
    )
    values = compiled.construct_params()
    parameters = [values[name] for name in compiled.positiontup or ()]
    return ResponsePage(
        await run_in_driver_thread(connection, partial(_fetch_columns, compiled.string, parameters))
    )


async def read_responses(
    session: AsyncSession,
    patient_ids: Sequence[uuid.UUID],
    *,
    after: ResponseCursor | None,
    limit: int = RESPONSE_PAGE_ROWS,
) -> tuple[ResponsePage, ResponseCursor | None]:
    """The next `limit` responses of these patients, by patient, then by when answered (ties by
    id: the order the export writes them in), in keyset pages so that no page, and so no
    batch of the write pass, is larger than `limit`. Returns the page and the cursor of the
    next, None after the last."""
    if not patient_ids:
        return ResponsePage([()] * len(_RESPONSE_COLUMNS)), None
    connection = await session.connection()
    if is_one_hop(connection):
        page = await _sqlite_page(connection, patient_ids, after, limit)
        if len(page) < limit:
            return page, None
        return page, (page.patient_ids[-1], page.authored[-1], page.ids[-1])
    rows = (
        await connection.execute(_page_statement(_ORDER, list(patient_ids), after, limit))
    ).all()
    page = ResponsePage(list(zip(*rows, strict=True)) if rows else [()] * len(_RESPONSE_COLUMNS))
    if len(page) < limit:
        return page, None
    return page, (
        as_uuid(page.patient_ids[-1]),
        utc_instant(page.authored[-1]),
        as_uuid(page.ids[-1]),
    )


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
