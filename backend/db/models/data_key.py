import uuid
from datetime import datetime

from sqlalchemy import Index, LargeBinary
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class DataKey(SQLModel, table=True):
    """One version of an owner's data key (DEK), wrapped by a key-encryption key (KEK).

    The owner is a patient or a staff member: whoever the encrypted fields belong to. The KEK never
    enters the database (DESIGN §5); ``wrapped_dek`` is only useful together with it, and its
    wrapping AAD binds owner, version and ``kek_id`` (engineering-notes §D.2).

    States: active (neither timestamp set; the newest version, used for new writes), retired (only
    decrypts older rows until they are re-encrypted), destroyed (``wrapped_dek`` erased:
    crypto-shredding, §D.6). The row itself stays as evidence of when the erasure happened.
    """

    __tablename__ = "data_keys"
    __table_args__ = (Index("ix_data_keys_kek_id", "kek_id"),)

    owner_id: uuid.UUID = Field(primary_key=True)
    dek_version: int = Field(primary_key=True)
    kek_id: str = Field(max_length=64)
    # NULL once destroyed.
    wrapped_dek: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_at: datetime = Field(sa_type=UTCDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    destroyed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
