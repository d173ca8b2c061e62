from datetime import datetime
from uuid import UUID

from sqlalchemy import CheckConstraint, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class Patient(SQLModel, table=True):
    """A person monitored by one clinic, optionally owned by one of its care teams.

    Identifying fields (name, email, phone, date of birth, MRN) are stored only as ciphertexts
    under the patient's own data key, with associated data binding table, column and row id
    (DESIGN §5). Email, MRN and phone are found by HMAC blind index; the indexes are unique per
    clinic (two clinics may know the same person). Erasure shreds the patient's key and nulls the
    indexes, leaving a row with ids, status and timestamps so foreign keys stay valid.

    The IANA ``time_zone`` and ``locale`` drive scheduling and wording; they are not identifying
    on their own and stay in plain text because timers read them without a data key.
    """

    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint(
            "status IN ('invited', 'active', 'withdrawn', 'erased')", name="ck_patients_status"
        ),
        UniqueConstraint("clinic_id", "email_index", name="uq_patients_clinic_email_index"),
        UniqueConstraint("clinic_id", "mrn_index", name="uq_patients_clinic_mrn_index"),
        UniqueConstraint("clinic_id", "phone_index", name="uq_patients_clinic_phone_index"),
    )

    id: UUID = Field(primary_key=True)
    clinic_id: UUID = Field(foreign_key="clinics.id", index=True)
    care_team_id: UUID | None = Field(default=None, foreign_key="care_teams.id", index=True)
    status: str = Field(default="invited", max_length=16)
    monitoring_consent: bool = Field(default=True)
    research_consent: bool = Field(default=False)
    consent_updated_at: datetime = Field(sa_type=UTCDateTime)
    time_zone: str = Field(max_length=64)
    locale: str = Field(max_length=35)
    name_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    email_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    phone_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    date_of_birth_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    mrn_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    email_index: bytes | None = Field(default=None, sa_type=LargeBinary)
    mrn_index: bytes | None = Field(default=None, sa_type=LargeBinary)
    phone_index: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_by: UUID = Field(foreign_key="staff.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
