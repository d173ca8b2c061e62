from datetime import datetime
from uuid import UUID

from sqlalchemy import CheckConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class RefreshToken(SQLModel, table=True):
    """One refresh token of a login (staff) or a device (patient), stored as its SHA-256 only.

    Rotation: each refresh marks the presented token used and issues a child in the same family.
    A token presented a second time means two parties hold it (one of them a thief), so the whole
    family is revoked (pattern of litestar-fullstack's ``_refresh_token.py``; OAuth 2.0 Security
    BCP, RFC 9700 §4.14.2). The tokens are 256 random bits, so an unkeyed hash suffices.
    """

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        CheckConstraint("audience IN ('staff', 'patient')", name="ck_refresh_tokens_audience"),
        CheckConstraint(
            "(audience = 'staff' AND staff_id IS NOT NULL AND patient_id IS NULL)"
            " OR (audience = 'patient' AND patient_id IS NOT NULL AND staff_id IS NULL)",
            name="ck_refresh_tokens_one_subject",
        ),
    )

    id: UUID = Field(primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    family_id: UUID = Field(index=True)
    parent_id: UUID | None = Field(default=None)
    audience: str = Field(max_length=16)
    staff_id: UUID | None = Field(default=None, foreign_key="staff.id", index=True)
    patient_id: UUID | None = Field(default=None, foreign_key="patients.id", index=True)
    device_id: UUID | None = Field(default=None, foreign_key="devices.id")
    clinic_id: UUID | None = Field(default=None, foreign_key="clinics.id", index=True)
    issued_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
