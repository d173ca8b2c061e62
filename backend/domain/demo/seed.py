"""Seed a synthetic demo clinic through the real services (never raw inserts).

Staff are created with a provisioned TOTP secret (as ``interlude staff create`` does); patients
are created by a clinician and enrol a (pretend) phone with their code, so they are active; each
has a treatment course with one past session (IV ketamine, N2O or esketamine) recorded and
completed through ``sessions.service``, which plans its check-ins; the PHQ-9 courses from
``cohort`` are submitted through ``responses.service`` at the time they were "answered", so the
alert rules run as they would have then. A few patients answer checklists that raise the other
alert kinds (suicidality, N2O neurological symptoms with a session hold, ketamine bladder and
misuse). Missed check-ins are marked by the service's own timers once it runs.

Names are invented from two short lists; nothing here is a real person.
"""

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import parse_qs, urlparse

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.demo.cohort import SimulatedCourse, phq9_answers, simulate_demo_cohort
from backend.domain.responses import service as responses
from backend.domain.responses.schemas import ResponseSubmission
from backend.domain.sessions import service as sessions
from backend.domain.sessions.schemas import (
    BloodPressureReading,
    Observations,
    SessionCompletion,
    SessionInput,
    SideEffect,
    SideEffectCode,
)
from backend.identity import patients, staff
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.identity.schemas import DeviceRegistration, NewPatient
from backend.state import Runtime
from questionnaires.answers import Answer
from questionnaires.registry import catalogue

DEMO_CLINIC_NAME: Final = "Interlude demo clinic"
_GIVEN: Final = ("Alex", "Sam", "Robin", "Jamie", "Morgan", "Casey", "Riley", "Jordan", "Avery",
                 "Quinn", "Rowan", "Skyler", "Emerson", "Harper")  # fmt: skip
_FAMILY: Final = ("Archer", "Bell", "Carter", "Dale", "Ellis", "Fox", "Grey", "Hart", "Irving",
                  "Joyce", "Kerr", "Lane", "Marsh", "North")  # fmt: skip
SESSION_MINUTES: Final = 40


@dataclass(frozen=True, slots=True)
class DemoLogin:
    role: Role
    name: str
    email: str
    password: str
    totp_secret: str

    @property
    def totp_uri(self) -> str:
        return f"otpauth://totp/Interlude:{self.email}?secret={self.totp_secret}&issuer=Interlude"


@dataclass(slots=True)
class DemoClinic:
    clinic_id: uuid.UUID
    logins: list[DemoLogin] = field(default_factory=list)
    patient_ids: list[uuid.UUID] = field(default_factory=list)

    def login(self, role: Role) -> DemoLogin:
        return next(login for login in self.logins if login.role is role)


def _secret(uri: str | None) -> str:
    assert uri is not None
    return parse_qs(urlparse(uri).query)["secret"][0]


def _answers(instrument_id: str, values: Mapping[str, int | bool]) -> tuple[Answer, ...]:
    """Every item of a checklist answered: the given values, otherwise no / 0."""
    instrument = catalogue().get(instrument_id)
    answers = []
    for item in instrument.items:
        if item.enable_when and item.link_id not in values:
            continue  # follow-up questions are only asked after a yes
        default: int | bool = False if item.type == "boolean" else 0
        answers.append(Answer(link_id=item.link_id, value=values.get(item.link_id, default)))
    return tuple(answers)


async def _submit(
    session: AsyncSession,
    runtime: Runtime,
    ref: responses.PatientRef,
    instrument_id: str,
    answers: tuple[Answer, ...],
    at: datetime,
) -> None:
    await responses.submit_response(
        session,
        runtime.keyring,
        patient=ref,
        submission=ResponseSubmission(
            instrument_id=instrument_id,
            instrument_version=catalogue().get(instrument_id).version,
            answers=answers,
            authored=at,
        ),
        idempotency_key=None,
        now=at + timedelta(minutes=1),
    )


_DEMO_SIDE_EFFECTS: Final[tuple[SideEffectCode, ...]] = (
    "nausea",
    "dizziness",
    "dissociation",
    "headache",
)


def _observations(index: int, modality: str, start: datetime, end: datetime) -> Observations:
    """What the clinic recorded at the session: blood pressure before and after, CADSS-6 and
    sedation for ketamine, and a side effect for every other patient. Derived from the index
    (not the cohort's random stream, which times the answers)."""
    ketamine = modality != "n2o"
    return Observations(
        blood_pressure=(
            BloodPressureReading(
                at=start - timedelta(minutes=10),
                systolic=118 + index % 14,
                diastolic=76 + index % 9,
            ),
            BloodPressureReading(
                at=end - timedelta(minutes=5),
                systolic=128 + (index * 7) % 22 + (8 if ketamine else 0),
                diastolic=80 + index % 11,
            ),
        ),
        cadss6=(2 + index * 3) % 13 if ketamine else None,
        cadss6_at=start + timedelta(minutes=40) if ketamine else None,
        sedation_moaas=4 if ketamine and index % 3 == 0 else 5,
        side_effects=()
        if index % 2
        else (
            SideEffect(
                code=_DEMO_SIDE_EFFECTS[(index // 2) % len(_DEMO_SIDE_EFFECTS)],
                severity=1 + (index // 2) % 2,
                onset_at=start + timedelta(minutes=25),
            ),
        ),
    )


def _modality(index: int) -> str:
    # Mostly IV ketamine (the cohort model's treatment), some N2O and esketamine.
    return {1: "n2o", 4: "n2o", 6: "esketamine", 9: "n2o"}.get(index, "iv_ketamine")


async def _seed_patient(
    session: AsyncSession,
    runtime: Runtime,
    clinician: Principal,
    *,
    index: int,
    course: SimulatedCourse,
    session_start: datetime,
    care_team_id: uuid.UUID | None,
    rng: random.Random,
) -> uuid.UUID:
    name = f"{_GIVEN[index % len(_GIVEN)]} {_FAMILY[(index * 5) % len(_FAMILY)]}"
    created = await patients.create_patient(
        session,
        runtime,
        clinician,
        NewPatient(
            name=name,
            time_zone="Europe/London",
            locale="en-GB",
            email=f"demo.patient{index + 1}@example.org",
            mrn=f"DEMO-{index + 1:04d}",
            care_team_id=care_team_id,
            # Most demo patients agreed to research use, so `interlude export` has a cohort; a
            # few declined, so the export visibly leaves them out.
            research_consent=index % 4 != 3,
        ),
    )
    patient_id = created.patient.id
    await patients.redeem_code(
        session,
        runtime,
        created.enrolment.code,
        DeviceRegistration(platform="android", time_zone="Europe/London", locale="en-GB"),
        source=f"demo-{index}",
    )
    modality = _modality(index)
    planned = await sessions.record_session(
        session,
        runtime.keyring,
        patient_id=patient_id,
        data=SessionInput(
            modality=modality,  # type: ignore[arg-type]
            planned_start=session_start,
            minutes=SESSION_MINUTES,
            n2o_concentration_percent=50 if modality == "n2o" else None,
            ketamine_mg_per_kg=0.5 if modality == "iv_ketamine" else None,
            esketamine_mg=56 if modality == "esketamine" else None,
        ),
        staff_id=clinician.subject_id,
        now=session_start - timedelta(days=3),
    )
    ended = session_start + timedelta(minutes=SESSION_MINUTES)
    await sessions.complete_session(
        session,
        runtime.keyring,
        patient_id=patient_id,
        session_id=planned.id,
        data=SessionCompletion(
            started_at=session_start,
            ended_at=ended,
            observations=_observations(index, modality, session_start, ended),
        ),
        now=ended + timedelta(minutes=30),
    )
    ref = responses.PatientRef(patient_id=patient_id, clinic_id=created.patient.clinic_id)
    last = len(course.observations) - 1
    for position, (days, total) in enumerate(course.observations):
        at = session_start + timedelta(days=days, minutes=rng.randint(0, 90))
        # One patient's latest PHQ-9 answers the self-harm item: a suicidality alert.
        item9 = 1 if index == 2 and position == last else 0
        await _submit(session, runtime, ref, "phq9", phq9_answers(total, item9=item9), at)
    after = session_start + timedelta(days=2, hours=3)
    if modality == "n2o" and index == 1:
        neuro = {
            "NEURO-1": True,
            "NEURO-2": True,
            "NEURO-3": True,
            "NEURO-RAPID": False,
            "NEURO-BOTH-SIDES": True,
        }
        await _submit(session, runtime, ref, "n2o-neuro", _answers("n2o-neuro", neuro), after)
    elif modality == "n2o":
        await _submit(session, runtime, ref, "n2o-neuro", _answers("n2o-neuro", {}), after)
    if modality != "n2o":
        effects = {"se-nausea": 1, "se-dissociation": 2, "se-headache": 1}
        await _submit(
            session,
            runtime,
            ref,
            "side-effects",
            _answers("side-effects", effects),
            ended + timedelta(hours=3),
        )
    if modality == "esketamine":
        flags = {"kb-blood": True, "kb-frequency": True, "km-craving": True}
        await _submit(
            session,
            runtime,
            ref,
            "ketamine-bladder-misuse",
            _answers("ketamine-bladder-misuse", flags),
            after,
        )
    return patient_id


async def seed_demo_clinic(
    runtime: Runtime,
    *,
    now: datetime,
    patient_count: int = 10,
    seed: int = 7,
    clinic_name: str = DEMO_CLINIC_NAME,
) -> DemoClinic:
    """A clinic with an admin, two clinicians, a care team and ``patient_count`` patients whose
    sessions were 1-3 weeks ago. Each patient is committed on its own."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
    maker = runtime.require_sessionmaker()
    async with maker() as session:
        clinic = await staff.create_clinic(
            session, runtime, name=clinic_name, totp_required_for_all_staff=True
        )
        demo = DemoClinic(clinic_id=clinic.id)
        accounts = []
        for role, name, email in (
            (Role.CLINIC_ADMIN, "Dr Ada Admin", "admin@demo.interlude.example"),
            (Role.CLINICIAN, "Dr Cleo Clinician", "clinician@demo.interlude.example"),
            (Role.CLINICIAN, "Nurse Noor", "nurse@demo.interlude.example"),
        ):
            created = await staff.create_staff(
                session,
                runtime,
                clinic_id=clinic.id,
                role=role,
                email=email,
                name=name,
                created_by=None,
                provision_totp=True,
            )
            accounts.append(created)
            demo.logins.append(
                DemoLogin(
                    role=role,
                    name=name,
                    email=email,
                    password=created.one_time_password,
                    totp_secret=_secret(created.totp_provisioning_uri),
                )
            )
        admin = Principal(
            subject_id=accounts[0].staff.id,
            role=Role.CLINIC_ADMIN,
            clinic_id=clinic.id,
            session_id=uuid.uuid4(),
        )
        team = await staff.create_care_team(session, runtime, admin, "Team North")
        for account in accounts[1:]:
            await staff.add_care_team_member(session, runtime, admin, team.id, account.staff.id)
        await session.commit()
    clinician = Principal(
        subject_id=accounts[1].staff.id,
        role=Role.CLINICIAN,
        clinic_id=clinic.id,
        session_id=uuid.uuid4(),
    )
    for index in range(patient_count):
        days_ago = 4 + (index * 17) % 18
        course = simulate_demo_cohort(1, seed=seed * 1000 + index, days_so_far=days_ago)[0]
        session_start = (now - timedelta(days=days_ago)).replace(
            hour=9 + index % 6, minute=0, second=0, microsecond=0
        )
        async with maker() as session:
            patient_id = await _seed_patient(
                session,
                runtime,
                clinician,
                index=index,
                course=course,
                session_start=session_start,
                care_team_id=team.id,
                rng=rng,
            )
            await session.commit()
        demo.patient_ids.append(patient_id)
    return demo
