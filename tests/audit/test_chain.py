"""The pure hash-chain encoding: every field counts, NULL is not empty, order is fixed."""

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.audit.chain import GENESIS_HASH, SYSTEM_CHAIN, ChainedEvent, chain_for, event_hash

BASE = ChainedEvent(
    id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
    chain="clinic:00000000-0000-4000-8000-0000000000c1",
    seq=1,
    at=datetime(2026, 11, 22, 20, 0, 0, 123456, tzinfo=UTC),
    actor_id="staff-1",
    actor_role="clinician",
    action="read",
    resource_type="patient",
    resource_id="p-1",
    clinic_id=uuid.UUID("00000000-0000-4000-8000-0000000000c1"),
    purpose="treatment",
    request_id="req-1",
    outcome="success",
    prev_hash=GENESIS_HASH,
)

TEXT_FIELDS = [
    "chain",
    "actor_id",
    "actor_role",
    "action",
    "resource_type",
    "resource_id",
    "purpose",
    "request_id",
    "outcome",
    "prev_hash",
]


def test_the_hash_is_hex_sha256_and_deterministic() -> None:
    assert len(event_hash(BASE)) == 64
    assert event_hash(BASE) == event_hash(dataclasses.replace(BASE))
    int(event_hash(BASE), 16)


@given(field=st.sampled_from(TEXT_FIELDS), value=st.text(max_size=40))
def test_changing_any_text_field_changes_the_hash(field: str, value: str) -> None:
    if getattr(BASE, field) == value:
        return
    changed = dataclasses.replace(BASE, **{field: value})  # type: ignore[arg-type]  # a text field
    assert event_hash(changed) != event_hash(BASE)


@given(seq=st.integers(min_value=2, max_value=2**62), micros=st.integers(1, 10**9))
def test_position_and_time_are_covered(seq: int, micros: int) -> None:
    assert event_hash(dataclasses.replace(BASE, seq=seq)) != event_hash(BASE)
    moved = BASE.at + timedelta(microseconds=micros)
    assert event_hash(dataclasses.replace(BASE, at=moved)) != event_hash(BASE)


def test_ids_and_clinic_are_covered() -> None:
    assert event_hash(dataclasses.replace(BASE, id=uuid.uuid4())) != event_hash(BASE)
    assert event_hash(dataclasses.replace(BASE, clinic_id=uuid.uuid4())) != event_hash(BASE)
    assert event_hash(dataclasses.replace(BASE, clinic_id=None)) != event_hash(BASE)


def test_null_and_empty_are_different() -> None:
    assert event_hash(dataclasses.replace(BASE, resource_id=None)) != event_hash(
        dataclasses.replace(BASE, resource_id="")
    )


def test_field_boundaries_cannot_be_shifted() -> None:
    # "ab" + "c" and "a" + "bc" must not collide: each field carries its length.
    one = dataclasses.replace(BASE, action="ab", resource_type="c")
    two = dataclasses.replace(BASE, action="a", resource_type="bc")
    assert event_hash(one) != event_hash(two)


def test_the_same_instant_in_another_zone_hashes_the_same() -> None:
    elsewhere = BASE.at.astimezone(timezone(timedelta(hours=-5)))
    assert event_hash(dataclasses.replace(BASE, at=elsewhere)) == event_hash(BASE)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        event_hash(dataclasses.replace(BASE, at=datetime(2026, 1, 1)))


def test_one_chain_per_clinic_and_one_for_the_system() -> None:
    clinic = uuid.uuid4()
    assert chain_for(clinic) == f"clinic:{clinic}"
    assert chain_for(None) == SYSTEM_CHAIN
    assert len(chain_for(clinic)) <= 64
