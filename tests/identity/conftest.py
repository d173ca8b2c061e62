"""An app with a movable clock and a small world: two clinics, their staff and enrolled patients.

Staff log in through the API (password, and TOTP where required); patients enrol by redeeming
the code a clinician got when creating them. The clock is moved between TOTP logins because a
code is accepted only once per 30-second step.
"""

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse
from uuid import UUID, uuid4

import pyotp
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.app import create_app
from backend.config import Settings
from backend.db.engine import create_engine, create_sessionmaker
from backend.identity import staff as staff_service
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.state import Runtime


class MovableClock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@dataclass
class StaffAccount:
    id: UUID
    role: Role
    clinic_id: UUID | None
    email: str
    password: str
    totp_secret: str | None = None
    tokens: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    def principal(self) -> Principal:
        """This account as the caller of a service called directly (no HTTP)."""
        return Principal(
            subject_id=self.id, role=self.role, clinic_id=self.clinic_id, session_id=uuid4()
        )


@dataclass
class PatientAccount:
    id: UUID
    clinic_id: UUID
    mrn: str
    email: str
    tokens: dict[str, Any] = field(default_factory=dict)
    device_id: UUID | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


@dataclass
class World:
    clinic_a: UUID
    clinic_b: UUID
    staff: dict[str, StaffAccount]
    patients: dict[str, PatientAccount]


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def identity_app(settings: Settings, clock: MovableClock) -> Litestar:
    return create_app(settings, clock=clock)


@pytest.fixture
async def api(identity_app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=identity_app) as client:
        yield client
        engine = _test_engines.pop(id(client), None)
        if engine is not None:
            await engine.dispose()


_test_engines: dict[int, AsyncEngine] = {}


def runtime_of(client: AsyncTestClient[Litestar]) -> Runtime:
    """The app's runtime (keys, clock) with a database engine of the test's own event loop: the
    test client runs the app on another loop, whose connections cannot be used from here."""
    runtime = client.app.state.runtime
    assert isinstance(runtime, Runtime)
    engine = _test_engines.get(id(client))
    if engine is None:
        engine = _test_engines[id(client)] = create_engine(runtime.settings)
    return dataclasses.replace(runtime, engine=engine, sessionmaker=create_sessionmaker(engine))


def totp_code(account: StaffAccount, clock: MovableClock) -> str:
    assert account.totp_secret is not None
    return pyotp.TOTP(account.totp_secret).at(clock.now())


async def make_clinic(
    client: AsyncTestClient[Litestar], name: str, *, totp_all: bool = False
) -> UUID:
    runtime = runtime_of(client)
    async with runtime.require_sessionmaker()() as session:
        clinic = await staff_service.create_clinic(
            session, runtime, name=name, totp_required_for_all_staff=totp_all
        )
        await session.commit()
    return clinic.id


async def make_staff(
    client: AsyncTestClient[Litestar],
    role: Role,
    clinic_id: UUID | None,
    email: str,
    *,
    provision_totp: bool | None = None,
) -> StaffAccount:
    runtime = runtime_of(client)
    if provision_totp is None:
        provision_totp = role in {Role.CLINIC_ADMIN, Role.OPERATOR}
    async with runtime.require_sessionmaker()() as session:
        created = await staff_service.create_staff(
            session,
            runtime,
            clinic_id=clinic_id,
            role=role,
            email=email,
            name=f"Dr {email.split('@')[0].title()}",
            created_by=None,
            provision_totp=provision_totp,
        )
        await session.commit()
    secret = None
    if created.totp_provisioning_uri is not None:
        secret = parse_qs(urlparse(created.totp_provisioning_uri).query)["secret"][0]
    return StaffAccount(
        id=created.staff.id,
        role=role,
        clinic_id=clinic_id,
        email=email,
        password=created.one_time_password,
        totp_secret=secret,
    )


async def log_in(
    client: AsyncTestClient[Litestar], account: StaffAccount, clock: MovableClock
) -> StaffAccount:
    body: dict[str, Any] = {"email": account.email, "password": account.password}
    if account.totp_secret is not None:
        clock.advance(seconds=30)  # a fresh TOTP step: codes are accepted once
        body["totp_code"] = totp_code(account, clock)
    response = await client.post("/api/v1/auth/staff/login", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "authenticated"
    account.tokens = response.json()["tokens"]
    return account


async def create_and_enrol_patient(
    client: AsyncTestClient[Litestar], clinician: StaffAccount, mrn: str, email: str
) -> PatientAccount:
    created = await client.post(
        "/api/v1/patients",
        headers=clinician.headers,
        json={
            "name": f"Patient {mrn}",
            "email": email,
            "mrn": mrn,
            "phone": "+44 20 7946 0" + mrn[-3:],
            "date_of_birth": "1980-02-29",
            "time_zone": "Europe/London",
            "locale": "en-GB",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    redeemed = await client.post(
        "/api/v1/enrolment/redeem",
        json={
            "code": body["enrolment"]["code"],
            "device": {
                "platform": "ios",
                "time_zone": "Europe/London",
                "locale": "en-GB",
                "push_token": f"push-token-{mrn}",
            },
        },
    )
    assert redeemed.status_code == 201, redeemed.text
    enrolled = redeemed.json()
    return PatientAccount(
        id=UUID(body["patient"]["id"]),
        clinic_id=clinician.clinic_id or UUID(int=0),
        mrn=mrn,
        email=email,
        tokens=enrolled["tokens"],
        device_id=UUID(enrolled["device_id"]),
    )


async def build_world(client: AsyncTestClient[Litestar], clock: MovableClock) -> World:
    clinic_a = await make_clinic(client, "Clinic A")
    clinic_b = await make_clinic(client, "Clinic B")
    accounts = {
        "admin_a": await make_staff(client, Role.CLINIC_ADMIN, clinic_a, "admin.a@example.org"),
        "clinician_a": await make_staff(client, Role.CLINICIAN, clinic_a, "doc.a@example.org"),
        "researcher_a": await make_staff(client, Role.RESEARCHER, clinic_a, "res.a@example.org"),
        "operator": await make_staff(client, Role.OPERATOR, None, "ops@example.org"),
        "admin_b": await make_staff(client, Role.CLINIC_ADMIN, clinic_b, "admin.b@example.org"),
        "clinician_b": await make_staff(client, Role.CLINICIAN, clinic_b, "doc.b@example.org"),
    }
    for account in accounts.values():
        await log_in(client, account, clock)
    patients = {
        "patient_a": await create_and_enrol_patient(
            client, accounts["clinician_a"], "MRN-A-001", "pat.a1@example.org"
        ),
        "patient_a2": await create_and_enrol_patient(
            client, accounts["clinician_a"], "MRN-A-002", "pat.a2@example.org"
        ),
        "patient_b": await create_and_enrol_patient(
            client, accounts["clinician_b"], "MRN-B-001", "pat.b1@example.org"
        ),
    }
    return World(clinic_a=clinic_a, clinic_b=clinic_b, staff=accounts, patients=patients)


@pytest.fixture
async def world(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:
    return await build_world(api, clock)
