from datetime import datetime
from uuid import UUID

from sqlalchemy import LargeBinary
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class EnrolmentCode(SQLModel, table=True):
    """A one-time code a clinician hands a patient to connect the app (short, expiring, single use).

    Only a keyed HMAC of the code is stored (``code_index``, a blind index): a short code has too
    few bits for a plain hash to resist an offline search of a stolen database, while the HMAC key
    never enters the database. Issuing a new code revokes the patient's earlier ones.
    """

    __tablename__ = "enrolment_codes"

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(foreign_key="patients.id", index=True)
    clinic_id: UUID = Field(foreign_key="clinics.id", index=True)
    code_index: bytes = Field(sa_type=LargeBinary, unique=True)
    created_by: UUID = Field(foreign_key="staff.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    redeemed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    device_id: UUID | None = Field(default=None, foreign_key="devices.id")
