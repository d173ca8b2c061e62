"""Column values as the database driver returns them, converted only as far as the export needs.

The export reads response rows without SQLAlchemy's per-value conversions (a `uuid.UUID` per
id, a datetime per timestamp cost as much as decrypting the row; `source._RESPONSE_COLUMNS`).
SQLite hands back UUIDs as 32 hex digits and timestamps as text without an offset; PostgreSQL
hands back `uuid.UUID` and aware datetimes.
"""

from __future__ import annotations

import datetime as dt
import uuid


def uuid_text(value: object) -> str:
    """A UUID column value as the canonical string the ciphertexts are bound to (slicing hex
    digits is cheaper than `uuid.UUID`)."""
    if isinstance(value, str):
        if len(value) == 32:
            return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
        return str(uuid.UUID(value))
    return str(value)


def uuid_bytes(value: object) -> bytes:
    """A UUID column value as its 16 bytes (what pseudonyms are computed from)."""
    if isinstance(value, str):
        return bytes.fromhex(value) if len(value) == 32 else uuid.UUID(value).bytes
    if isinstance(value, uuid.UUID):
        return value.bytes
    raise TypeError("not a UUID column value")


def as_uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def utc_instant(value: object) -> dt.datetime:
    """A timestamp column value as an aware UTC datetime (`backend.db.types.UTCDateTime`'s
    result, without its per-value processing)."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
    raise TypeError("not a timestamp column value")
