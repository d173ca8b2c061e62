"""Column values as the database driver returns them, converted only as far as the export needs.

The export reads response rows without SQLAlchemy's per-value conversions (a `uuid.UUID` per
id, a datetime per timestamp cost as much as decrypting the row; `source._RESPONSE_COLUMNS`).
SQLite hands back UUIDs as 32 hex digits and timestamps as text without an offset; PostgreSQL
hands back `uuid.UUID` and aware datetimes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Final

import pyarrow as pa

_INSTANT: Final = pa.timestamp("us", tz="UTC")


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


def utc_instants(values: Sequence[object]) -> pa.Array:
    """`utc_instant` of each value, as an Arrow array of UTC instants (microseconds): SQLite's
    timestamp text parsed by Arrow for the whole column at once, datetimes converted by Arrow."""
    if values and isinstance(values[0], str):
        try:
            return pa.array(values, pa.string()).cast(pa.timestamp("us")).cast(_INSTANT)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # not all of that text form: one at a time, as `utc_instant` reads them
        return pa.array([utc_instant(v) for v in values], _INSTANT)
    return pa.array(values, _INSTANT)


def _all_hex_text(values: Sequence[object]) -> bool:
    """Whether every value is SQLite's text form of a UUID (32 hex digits; a column holds one
    driver's values, so checking types and lengths in bulk is enough before slicing)."""
    return bool(values) and set(map(type, values)) == {str} and set(map(len, values)) == {32}  # type: ignore[arg-type]


def uuid_texts(values: Sequence[object]) -> list[str]:
    """`uuid_text` of each value."""
    if _all_hex_text(values):
        texts: Sequence[str] = values  # type: ignore[assignment]
        return [f"{v[:8]}-{v[8:12]}-{v[12:16]}-{v[16:20]}-{v[20:]}" for v in texts]
    return [uuid_text(v) for v in values]


def uuid_bytes_of(values: Sequence[object]) -> list[bytes]:
    """`uuid_bytes` of each value (SQLite's: all the hex decoded at once)."""
    if _all_hex_text(values):
        raw = bytes.fromhex("".join(values))  # type: ignore[arg-type]
        return [raw[i : i + 16] for i in range(0, len(raw), 16)]
    return [uuid_bytes(v) for v in values]
