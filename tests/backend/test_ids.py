import uuid

from hypothesis import given
from hypothesis import strategies as st

from backend.lib.ids import uuid7


def test_uuid7_has_version_7_and_the_rfc_variant() -> None:
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


@given(st.integers(min_value=0, max_value=(1 << 48) - 2))
def test_uuid7_orders_by_millisecond(ms: int) -> None:
    assert uuid7(ms) < uuid7(ms + 1)
    assert uuid7(ms).int >> 80 == ms


def test_uuid7_values_are_unique() -> None:
    assert len({uuid7(1_700_000_000_000) for _ in range(10_000)}) == 10_000
