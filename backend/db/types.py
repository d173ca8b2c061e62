"""Column types shared by all tables."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    Naive datetimes are refused on the way in (they are bugs: whose local time?). SQLite stores no
    offset, so UTC is re-attached on the way out. Pattern: advanced-alchemy's DateTimeUTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetime refused; use an aware UTC datetime"
            raise ValueError(msg)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UuidText(TypeDecorator[str]):
    """A uuid column read as its canonical text, ``str(uuid.UUID)``, for a select that wants only
    the text: a field's associated data binds its row id as text, and a course's responses are
    read on every submission, where a `uuid.UUID` per row (parsed, then printed) cost more than
    the row's AES-GCM. Read-only: ``type_coerce`` a uuid column to it in a select."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        raise TypeError("UuidText is for reading a uuid column; bind a uuid.UUID")

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if type(value) is str and len(value) == 32:
            # SQLite: SQLAlchemy's Uuid stores the 32 hex digits.
            h = value.lower()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if isinstance(value, uuid.UUID):  # asyncpg's own UUID is one
            return str(value)
        return str(uuid.UUID(str(value)))  # anything else must still be a uuid
