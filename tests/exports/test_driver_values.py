"""Driver values become the exact strings and instants the rest of the system uses."""

from __future__ import annotations

import datetime as dt
import uuid

from backend.domain.exports.driver_values import as_uuid, utc_instant, uuid_bytes, uuid_text


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
