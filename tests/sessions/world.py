"""A clinic with staff, patients and devices in a real, migrated database (both dialects)."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto.kek import LocalKekProvider
from backend.db.engine import create_sessionmaker
from backend.db.models.clinic import Clinic
from backend.db.models.device import Device
from backend.db.models.outbox import OutboxMessage
from backend.db.models.patient import Patient
from backend.db.models.staff import StaffMember
from backend.domain.check_ins import repository
from backend.domain.sessions import service
from backend.domain.sessions.schemas import SessionInput
from backend.keyring.service import Keyring
from tests.support import ManualClock

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]

# A Monday noon in Paris (UTC+1 in November).
START = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


class World:
    def __init__(self, engine: AsyncEngine, clock: ManualClock | None = None) -> None:
        self.engine = engine
        self.sessions = create_sessionmaker(engine)
        self.clock = clock or ManualClock(START - timedelta(days=2))
        self.keyring = Keyring(LocalKekProvider.generate(), clock=self.clock)
        self.clinic_id = uuid.uuid4()
        self.staff_id = uuid.uuid4()

    async def setup(self) -> "World":
        async with self.sessions() as s, s.begin():
            s.add(Clinic(id=self.clinic_id, name=f"clinic {self.clinic_id}", created_at=self.now))
            await s.flush()
            s.add(
                StaffMember(
                    id=self.staff_id,
                    clinic_id=self.clinic_id,
                    role="clinician",
                    created_at=self.now,
                )
            )
        return self

    @property
    def now(self) -> datetime:
        return self.clock.now()

    async def patient(
        self, *, time_zone: str = "Europe/Paris", devices: Sequence[str] = ("android",)
    ) -> uuid.UUID:
        patient_id = uuid.uuid4()
        async with self.sessions() as s, s.begin():
            await self.add_patients(s, [patient_id], time_zone=time_zone, devices=devices)
        return patient_id

    async def add_patients(
        self,
        s: AsyncSession,
        patient_ids: Sequence[uuid.UUID],
        *,
        time_zone: str = "Europe/Paris",
        devices: Sequence[str] = ("android",),
    ) -> None:
        for patient_id in patient_ids:
            s.add(
                Patient(
                    id=patient_id,
                    clinic_id=self.clinic_id,
                    status="active",
                    consent_updated_at=self.now,
                    time_zone=time_zone,
                    locale="en",
                    created_by=self.staff_id,
                    created_at=self.now,
                )
            )
        await s.flush()
        for patient_id in patient_ids:
            await self.keyring.create_key(s, patient_id)
            keys = await self.keyring.owner_keys(s, patient_id, active_only=True)
            for platform in devices:
                device_id = uuid.uuid4()
                token = f"token-{device_id}".encode()
                s.add(
                    Device(
                        id=device_id,
                        patient_id=patient_id,
                        clinic_id=self.clinic_id,
                        platform=platform,
                        push_token_ciphertext=keys.encrypt(
                            table="devices",
                            column="push_token_ciphertext",
                            row_id=str(device_id),
                            plaintext=token,
                        ),
                        time_zone=time_zone,
                        locale="en",
                        registered_at=self.now,
                        last_seen_at=self.now,
                    )
                )
        await s.flush()

    async def record(
        self, patient_id: uuid.UUID, start: datetime = START, **fields: object
    ) -> uuid.UUID:
        data = SessionInput(
            modality="n2o",
            planned_start=start,
            minutes=60,
            n2o_concentration_percent=50,
            **fields,  # type: ignore[arg-type]
        )
        async with self.sessions() as s, s.begin():
            row = await service.record_session(
                s,
                self.keyring,
                patient_id=patient_id,
                data=data,
                staff_id=self.staff_id,
                now=self.now,
            )
            return row.id

    async def rows(self, patient_id: uuid.UUID) -> list[Any]:
        async with self.engine.connect() as connection:
            return list(await repository.rows_for_patient(connection, patient_id))

    async def outbox_count(self, **where: object) -> int:
        statement = select(func.count()).select_from(OUTBOX)
        for column, value in where.items():
            statement = statement.where(OUTBOX.c[column] == value)
        async with self.engine.connect() as connection:
            return int(await connection.scalar(statement) or 0)
