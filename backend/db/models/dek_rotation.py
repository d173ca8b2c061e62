import uuid
from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class DekRotation(SQLModel, table=True):
    """One run of ``interlude keys rotate-deks`` (backend.keyring.dek_rotation), for progress.

    Which owners are done is derived from the data (their active key is newer than ``started_at``
    and no ciphertext names another version), so these counters only report progress; resuming
    never depends on them. ``finished_at`` is set once every owner is done and every retired
    version is destroyed.
    """

    __tablename__ = "dek_rotations"

    id: uuid.UUID = Field(primary_key=True)
    started_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Of the latest pass (a resume walks every owner again): owners with live keys, owners done.
    owners_total: int = Field(default=0)
    owners_done: int = Field(default=0)
    # Over the whole run, every pass.
    rows_reencrypted: int = Field(default=0, sa_type=BigInteger)
    versions_destroyed: int = Field(default=0, sa_type=BigInteger)
    # Of the latest pass: ciphertexts under an old version that failed to decrypt (left as is).
    rows_unreadable: int = Field(default=0, sa_type=BigInteger)
