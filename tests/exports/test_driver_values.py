"""Driver values become the exact strings and instants the rest of the system uses."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from backend.domain.exports.driver_values import (
    as_uuid,
    utc_instant,
    utc_instants,
    uuid_bytes,
    uuid_bytes_of,
    uuid_text,
    uuid_texts,
)


def test_uuid_text_is_the_canonical_form() -> None:
    value = uuid.uuid4()
    assert uuid_text(value) == str(value)
    assert uuid_text(value.hex) == str(value)
    assert uuid_text(str(value)) == str(value)
    assert uuid_bytes(value.hex) == uuid_bytes(value) == uuid_bytes(str(value)) == value.bytes
    assert as_uuid(value.hex) == as_uuid(value) == value


def test_timestamps_are_aware_utc() -> None:
    at = dt.datetime(2026, 1, 7, 19, 0, tzinfo=dt.UTC)
    assert utc_instant("2026-01-07 19:00:00.000000") == at
    assert utc_instant(at.replace(tzinfo=None)) == at
    assert utc_instant(at.astimezone(dt.timezone(dt.timedelta(hours=2)))) == at


def test_columns_convert_as_each_value_does() -> None:
    """The page-at-once conversions agree with the one-value ones, for SQLite's text and for
    typed values, and fall back to them for anything else."""
    ids = [uuid.uuid4() for _ in range(5)]
    for column in ([i.hex for i in ids], ids, [str(i) for i in ids], [ids[0].hex, ids[1]]):
        assert (
            uuid_texts(column)
            == [uuid_text(v) for v in column]
            == [str(i) for i in ids[: len(column)]]
        )
        assert uuid_bytes_of(column) == [uuid_bytes(v) for v in column]
    assert uuid_texts([]) == []
    assert uuid_bytes_of([]) == []
    stored = ["2026-01-05 11:00:00.000000", "2026-03-29 01:30:00.123456", "2026-01-05 11:00:00"]
    aware = [
        dt.datetime(2026, 1, 5, 13, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2026, 1, 5, 11),
    ]
    columns: tuple[list[Any], ...] = (stored, aware, ["2026-01-05T11:00:00+00:00"])
    for column in columns:
        assert utc_instants(column).to_pylist() == [utc_instant(v) for v in column]
