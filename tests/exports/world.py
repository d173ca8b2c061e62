"""A clinic with known identifying values, built through the real services, and the helpers to
request, follow and unpack exports through the API."""

import asyncio
import io
import struct
import tarfile
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.db.models.alert import Alert
from backend.db.models.treatment import TreatmentCourse, TreatmentSession
from backend.domain.responses.schemas import ResponseSubmission
from backend.domain.responses.service import PatientRef, submit_response
from backend.domain.sessions import service as sessions_service
from backend.domain.sessions.schemas import (
    BloodPressureReading,
    Observations,
    ObservationsInput,
    SideEffect,
)
from backend.identity.roles import Role
from questionnaires.answers import Answer
from tests.identity.conftest import (
    MovableClock,
    StaffAccount,
    log_in,
    make_clinic,
    make_staff,
    runtime_of,
)

COURSE_START = datetime(2026, 3, 10, 8, 15, 27, 418000, tzinfo=UTC)
RESPONSES_PER_PATIENT = 3
ROWS_PER_PHQ9 = 10  # nine items and the total
SESSION_ROWS_PER_PATIENT = 10
"""Session 1: two blood-pressure readings (two rows each), CADSS-6, MOAA/S, two side effects;
session 2: MOAA/S and one side effect (`_observations`)."""


@dataclass
class KnownPatient:
    id: uuid.UUID
    name: str
    email: str
    phone: str
    mrn: str
    date_of_birth: date
    note: str
    consent: bool
    timestamps: list[datetime] = field(default_factory=list)
    record_ids: list[uuid.UUID] = field(default_factory=list)

    def identifying_strings(self) -> list[str]:
        """Every form in which this patient's identifying values could leak as text."""
        given, family = self.name.split(" ", 1)
        dob = self.date_of_birth
        values = [
            self.name,
            given,
            family,
            self.email,
            self.phone,
            "".join(ch for ch in self.phone if ch.isdigit()),
            self.mrn,
            dob.isoformat(),
            dob.strftime("%d/%m/%Y"),
            dob.strftime("%m/%d/%Y"),
            dob.strftime("%Y%m%d"),
            *self.note.split(" | "),
            str(self.id),
            self.id.hex,
        ]
        for at in self.timestamps:
            values += [
                at.isoformat(),
                at.strftime("%Y-%m-%dT%H:%M:%S"),
                at.strftime("%Y-%m-%d %H:%M:%S"),
                at.strftime("%Y-%m-%d"),
                str(int(at.timestamp())),
                str(int(at.timestamp() * 1000)),
            ]
        values += [str(r) for r in self.record_ids] + [r.hex for r in self.record_ids]
        return values

    def identifying_bytes(self) -> list[bytes]:
        """Binary forms: ids as 16 bytes, timestamps as Parquet would store them (int64 LE)."""
        found = [self.id.bytes] + [r.bytes for r in self.record_ids]
        for at in self.timestamps:
            micros = int(at.timestamp() * 1_000_000)
            found += [
                struct.pack("<q", micros),
                struct.pack("<q", micros // 1000),
                struct.pack("<q", micros // 1_000_000),
            ]
        return found


def _observations(
    known: KnownPatient, index: int, first: datetime, second: datetime
) -> tuple[Observations, Observations]:
    """What the clinic recorded at the patient's two sessions. The side-effect note names the
    patient: it must never leave without the free-text opt-in."""
    observations = (
        Observations(
            blood_pressure=(
                # Pre-dose, 10 minutes before the start, and 70 minutes in.
                BloodPressureReading(
                    at=first - timedelta(minutes=10, seconds=index),
                    systolic=130 + index,
                    diastolic=85,
                ),
                BloodPressureReading(
                    at=first + timedelta(minutes=70, seconds=index),
                    systolic=142,
                    diastolic=90 + index,
                ),
            ),
            cadss6=7 + index,
            cadss6_at=first + timedelta(minutes=40, seconds=index),
            sedation_moaas=4,
            side_effects=(
                SideEffect(
                    code="nausea",
                    severity=2,
                    onset_at=first + timedelta(minutes=30, seconds=index),
                    note=f"{known.name} said: {known.note}",
                ),
                SideEffect(
                    code="dizziness", severity=1, onset_at=first + timedelta(hours=2, seconds=2)
                ),
            ),
        ),
        Observations(
            sedation_moaas=5,
            sedation_moaas_at=second + timedelta(minutes=65),
            side_effects=(
                SideEffect(code="headache", severity=3, onset_at=second + timedelta(hours=3)),
            ),
        ),
    )
    for recorded in observations:
        known.timestamps += [r.at for r in recorded.blood_pressure]
        known.timestamps += [e.onset_at for e in recorded.side_effects]
        known.timestamps += [t for t in (recorded.cadss6_at, recorded.sedation_moaas_at) if t]
    return observations


@dataclass
class ExportWorld:
    clinic_a: uuid.UUID
    clinic_b: uuid.UUID
    staff: dict[str, StaffAccount]
    patients: list[KnownPatient]
    b_patients: list[KnownPatient]

    @property
    def consenting(self) -> list[KnownPatient]:
        return [p for p in self.patients if p.consent]


def _phq9(scores: list[int]) -> tuple[Answer, ...]:
    return tuple(
        Answer(link_id=f"phq9-{i}", value=value) for i, value in enumerate(scores, start=1)
    )


async def _patient(
    api: AsyncTestClient[Litestar],
    clinician: StaffAccount,
    clock: MovableClock,
    index: int,
    *,
    prefix: str,
    consent: bool,
    birth: date,
) -> KnownPatient:
    known = KnownPatient(
        id=uuid.UUID(int=0),
        name=f"{prefix}ulon Quixote-Marchetti{index}",
        email=f"{prefix.lower()}.quixote{index}@marchetti-mail.example",
        phone=f"+44 20 7946 {index:04d}",
        mrn=f"MRN-{prefix}-77{index:03d}",
        date_of_birth=birth,
        note=f"{prefix}ulon's sister Philippa{index} | lives at {index} Wallaby Way Sydney",
        consent=consent,
    )
    created = await api.post(
        "/api/v1/patients",
        headers=clinician.headers,
        json={
            "name": known.name,
            "email": known.email,
            "phone": known.phone,
            "mrn": known.mrn,
            "date_of_birth": birth.isoformat(),
            "time_zone": "Europe/London",
            "research_consent": consent,
        },
    )
    assert created.status_code == 201, created.text
    known.id = uuid.UUID(created.json()["patient"]["id"])
    runtime = runtime_of(api)
    assert clinician.clinic_id is not None
    start = COURSE_START + timedelta(days=index, minutes=7 * index, seconds=index)
    async with runtime.require_sessionmaker()() as session:
        # Treatment as the sessions area stores it: plain timing and dose, encrypted note.
        course_id, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        now = clock.now()
        session.add(
            TreatmentCourse(
                id=course_id,
                patient_id=known.id,
                clinic_id=clinician.clinic_id,
                modality="n2o",
                protocol_id="n2o-default",
                protocol_version="1",
                started_at=start,
                created_at=now,
            )
        )
        await session.flush()
        keys = await runtime.keyring.owner_keys(session, known.id, active_only=True)
        for session_id, at in ((first, start), (second, start + timedelta(days=2))):
            session.add(
                TreatmentSession(
                    id=session_id,
                    course_id=course_id,
                    patient_id=known.id,
                    clinic_id=clinician.clinic_id,
                    modality="n2o",
                    n2o_concentration_percent=50,
                    n2o_minutes=60,
                    planned_start_at=at,
                    planned_end_at=at + timedelta(hours=1),
                    started_at=at,
                    ended_at=at + timedelta(minutes=61),
                    status="completed",
                    notes_ct=keys.encrypt(
                        table="treatment_sessions",
                        column="notes_ct",
                        row_id=str(session_id),
                        plaintext=known.note.encode(),
                    ),
                    created_at=now,
                    updated_at=now,
                )
            )
            known.timestamps += [at, at + timedelta(minutes=61)]
        await session.flush()
        # Observations and side effects through the sessions service, as the API stores them.
        for session_id, recorded in zip(
            (first, second),
            _observations(known, index, start, start + timedelta(days=2)),
            strict=True,
        ):
            await sessions_service.record_observations(
                session,
                runtime.keyring,
                patient_id=known.id,
                session_id=session_id,
                data=ObservationsInput(observations=recorded),
                now=now,
            )
        # An alert as the alerts area stores it, with the clinician's note encrypted.
        alert_id = uuid.uuid4()
        raised = start + timedelta(days=2, hours=5, seconds=index + 3)
        acknowledged = raised + timedelta(minutes=17, seconds=index)
        resolved = raised + timedelta(hours=26, seconds=index)
        session.add(
            Alert(
                id=alert_id,
                clinic_id=clinician.clinic_id,
                patient_id=known.id,
                kind="SEVERE_SCORE",
                severity="high",
                severity_rank=3,
                status="resolved",
                dedup_key=f"SEVERE_SCORE|{known.id}",
                rule_id="severe-score",
                parameter_version="interlude-core@1.0.0",
                first_triggered_at=raised,
                last_triggered_at=raised,
                opened_at=raised,
                acknowledged_at=acknowledged,
                resolved_at=resolved,
                resolution_ct=keys.encrypt(
                    table="alerts",
                    column="resolution_ct",
                    row_id=str(alert_id),
                    plaintext=known.note.encode(),
                ),
                updated_at=now,
            )
        )
        known.timestamps += [raised, acknowledged, resolved]
        known.record_ids.append(alert_id)
        await session.flush()
        for k in range(RESPONSES_PER_PATIENT):
            authored = start + timedelta(hours=2 + 24 * k, minutes=index, seconds=13 * k + 7)
            result = await submit_response(
                session,
                runtime.keyring,
                patient=PatientRef(patient_id=known.id, clinic_id=clinician.clinic_id),
                submission=ResponseSubmission(
                    instrument_id="phq9",
                    instrument_version="1.0.0",
                    answers=_phq9([2, 1, 3, 2, 1, 0, 2, 1, 0]),
                    authored=authored,
                ),
                idempotency_key=None,
                now=clock.now(),
            )
            known.timestamps.append(authored)
            known.record_ids.append(result.response_id)
        await session.commit()
    known.timestamps.append(start)
    return known


async def build_world(api: AsyncTestClient[Litestar], clock: MovableClock) -> ExportWorld:
    clinic_a = await make_clinic(api, "Export Clinic A")
    clinic_b = await make_clinic(api, "Export Clinic B")
    staff = {
        "admin_a": await make_staff(api, Role.CLINIC_ADMIN, clinic_a, "admin.a@example.org"),
        "clinician_a": await make_staff(api, Role.CLINICIAN, clinic_a, "doc.a@example.org"),
        "researcher_a": await make_staff(api, Role.RESEARCHER, clinic_a, "res.a@example.org"),
        "researcher_a2": await make_staff(api, Role.RESEARCHER, clinic_a, "res.a2@example.org"),
        "clinician_b": await make_staff(api, Role.CLINICIAN, clinic_b, "doc.b@example.org"),
        "researcher_b": await make_staff(api, Role.RESEARCHER, clinic_b, "res.b@example.org"),
        "admin_b": await make_staff(api, Role.CLINIC_ADMIN, clinic_b, "admin.b@example.org"),
    }
    for account in staff.values():
        await log_in(api, account, clock)
    # Ages 41-43 at the first treatment (one 5-year band), so six consenting patients form one
    # k-anonymity class; two more did not consent to research use.
    births = [date(1983, 5, 17), date(1984, 1, 2), date(1982, 11, 30), date(1983, 8, 8)]
    patients = [
        await _patient(
            api,
            staff["clinician_a"],
            clock,
            i,
            prefix="Zeb",
            consent=i < 6,
            birth=births[i % len(births)],
        )
        for i in range(8)
    ]
    b_patients = [
        await _patient(
            api, staff["clinician_b"], clock, i, prefix="Bob", consent=True, birth=births[0]
        )
        for i in range(3)
    ]
    return ExportWorld(
        clinic_a=clinic_a,
        clinic_b=clinic_b,
        staff=staff,
        patients=patients,
        b_patients=b_patients,
    )


async def request_export(
    api: AsyncTestClient[Litestar], account: StaffAccount, **body: Any
) -> dict[str, Any]:
    response = await api.post("/api/v1/exports", headers=account.headers, json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["state"] == "queued"
    return job


async def wait_for(
    api: AsyncTestClient[Litestar],
    account: StaffAccount,
    export_id: str,
    states: frozenset[str] = frozenset({"done", "refused", "failed"}),
    within_seconds: float = 60.0,
) -> dict[str, Any]:
    """Poll GET until the job reaches one of `states` (the app's timers run it)."""
    deadline = asyncio.get_running_loop().time() + within_seconds
    while True:
        response = await api.get(f"/api/v1/exports/{export_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        assert 0 <= job["percent"] <= 100
        if job["state"] in states:
            return job
        assert asyncio.get_running_loop().time() < deadline, f"export stuck in {job['state']}"
        await asyncio.sleep(0.1)


def unpack(archive: bytes, kind: str, target: Path) -> Path:
    """Extract a downloaded archive (zip or tar.gz) into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(archive)) as packed:
            packed.extractall(target)
    else:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as packed:
            packed.extractall(target, filter="data")
    return target


async def export_and_download(
    api: AsyncTestClient[Litestar],
    account: StaffAccount,
    target: Path,
    **body: Any,
) -> tuple[dict[str, Any], Path]:
    job = await request_export(api, account, **body)
    done = await wait_for(api, account, job["id"])
    assert done["state"] == "done", done
    download = await api.get(f"/api/v1/exports/{job['id']}/download", headers=account.headers)
    assert download.status_code == 200, download.text
    return done, unpack(download.content, body.get("archive", "zip"), target)
