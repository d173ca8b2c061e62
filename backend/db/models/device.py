from datetime import datetime
from uuid import UUID

from sqlalchemy import CheckConstraint, LargeBinary
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class Device(SQLModel, table=True):
    """A patient's phone (or browser) running the companion app.

    The push token addresses one person's phone, so it is encrypted under the patient's data key.
    Time zone and locale are the device's own; the patient's scheduling zone lives on the patient.
    ``revoked_at`` is set by logout-everywhere and by erasure: a revoked device gets no pushes.
    """

    __tablename__ = "devices"
    __table_args__ = (
        CheckConstraint("platform IN ('ios', 'android', 'web')", name="ck_devices_platform"),
    )

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(foreign_key="patients.id", index=True)
    clinic_id: UUID = Field(foreign_key="clinics.id", index=True)
    platform: str = Field(max_length=16)
    push_token_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    time_zone: str = Field(max_length=64)
    locale: str = Field(max_length=35)
    app_version: str | None = Field(default=None, max_length=32)
    registered_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
