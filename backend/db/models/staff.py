from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, LargeBinary
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class StaffMember(SQLModel, table=True):
    """Someone who logs in with email, password (argon2id) and usually TOTP.

    Name and email exist only as ciphertexts under this staff member's own data key (the keyring,
    owner = this row's id), so erasing a former employee is shredding one key. Login finds the row
    by ``email_index``, an HMAC blind index (engineering-notes §D.6), unique across the service
    because staff log in without naming a clinic. Operators run the service and belong to no
    clinic; everyone else belongs to exactly one.

    ``totp_last_step`` is the time step of the last accepted code, so a code seen once (shoulder
    surfing, a proxy log) cannot be replayed inside its 30-second window (RFC 6238 §5.2).
    """

    __tablename__ = "staff"
    __table_args__ = (
        CheckConstraint(
            "role IN ('clinician', 'clinic_admin', 'researcher', 'operator')",
            name="ck_staff_role",
        ),
        CheckConstraint(
            "(role = 'operator' AND clinic_id IS NULL)"
            " OR (role <> 'operator' AND clinic_id IS NOT NULL)",
            name="ck_staff_operator_has_no_clinic",
        ),
        CheckConstraint("status IN ('active', 'disabled', 'erased')", name="ck_staff_status"),
    )

    id: UUID = Field(primary_key=True)
    clinic_id: UUID | None = Field(default=None, foreign_key="clinics.id", index=True)
    role: str = Field(max_length=16)
    status: str = Field(default="active", max_length=16)
    email_index: bytes | None = Field(default=None, sa_type=LargeBinary, unique=True)
    email_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    name_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    password_hash: str | None = Field(default=None, max_length=255)
    totp_secret_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    # A secret being enrolled: it replaces totp_secret_ciphertext once a code from it is confirmed.
    totp_pending_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    totp_last_step: int | None = Field(default=None, sa_type=BigInteger)
    totp_confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    # When this account last completed a sign-in (None: never): a clinic admin spots dormant
    # accounts to disable without reading the audit log.
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
