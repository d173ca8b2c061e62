"""Stored answers read as columns (`answer_columns`) are the answers msgspec decodes, and any
document outside the compact numeric form is left to msgspec."""

from __future__ import annotations

import sys

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.exports.stored_answers import answer_columns, decode_answers
from questionnaires.answers import Answer

_encode = msgspec.msgpack.Encoder().encode

_link_ids = st.one_of(
    st.sampled_from([f"phq9-{i}" for i in range(1, 10)] + ["qids-16", "x", ""]),
    st.text(max_size=40),
    # The bytes the columnar reader splits at, inside a link id.
    st.just("a\u0082\u00a6linkId"),
    st.just("\u2082\u00a6linkIdb"),
)
_values = st.one_of(
    st.integers(0, 127),
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
)


def _stored(answers: list[Answer]) -> bytes:
    """As `responses.service` stores answers: sorted by link id, msgpack."""
    return _encode(sorted(answers, key=lambda a: a.link_id))


def _expected(plaintexts: list[bytes]) -> tuple[list[int], list[str], list[float]]:
    flat = decode_answers(plaintexts)
    return (
        list(flat.counts),
        [a.link_id for a in flat.answers],
        [float(a.value) for a in flat.answers],
    )


def _read(plaintexts: list[bytes]) -> tuple[list[int], list[str], list[float]] | None:
    columns = answer_columns(plaintexts)
    if columns is None:
        return None
    return (
        columns.counts.to_pylist(),
        columns.variables.to_pylist(),
        columns.values.to_pylist(),
    )


def _compact(answers: list[Answer]) -> bool:
    return all(
        isinstance(a.value, int)
        and not isinstance(a.value, bool)
        and 0 <= a.value < 128
        and len(a.link_id.encode()) < 32
        for a in answers
    )


@given(
    st.lists(
        st.lists(st.builds(Answer, link_id=_link_ids, value=_values), max_size=20),
        max_size=12,
    )
)
def test_columns_are_what_msgspec_decodes(documents: list[list[Answer]]) -> None:
    plaintexts = [_stored(answers) for answers in documents]
    read = _read(plaintexts)
    if read is not None:
        assert read == _expected(plaintexts)
    # The form the submission path writes for numeric items is always read as columns,
    # unless a link id holds the bytes the reader splits at.
    if all(_compact(a) for a in documents) and not any(
        "linkId" in answer.link_id for answers in documents for answer in answers
    ):
        assert read is not None


def test_phq9_page_is_read_as_columns() -> None:
    answers = [Answer(link_id=f"phq9-{i}", value=i % 4) for i in range(1, 10)]
    qids = [Answer(link_id=f"qids-{i:02d}", value=i % 4) for i in range(1, 17)]  # array16
    plaintexts = [_stored(answers), _stored(qids), _stored([])] * 50
    read = _read(plaintexts)
    assert read is not None
    assert read == _expected(plaintexts)


@pytest.mark.parametrize(
    "document",
    [
        # Keys in the other order, an extra key, a value of a wider type, an array32 header.
        _encode([{"value": 1, "linkId": "phq9-1"}]),
        _encode([{"linkId": "phq9-1", "value": 1, "note": "x"}]),
        _encode([{"linkId": "phq9-1", "value": 200}]),
        b"\xdd\x00\x00\x00\x01" + _encode({"linkId": "phq9-1", "value": 1}),
    ],
)
def test_other_forms_are_left_to_msgspec(document: bytes) -> None:
    assert answer_columns([document]) is None


def test_damaged_documents_are_left_to_msgspec_which_refuses_them() -> None:
    good = _stored([Answer(link_id="phq9-1", value=1), Answer(link_id="phq9-2", value=2)])
    for damaged in (
        good[:-1],
        good + b"\x01",
        b"\x93" + good[1:],
        good.replace(b"value", b"vAlue"),
    ):
        assert answer_columns([good, damaged]) is None
        with pytest.raises(msgspec.DecodeError):
            decode_answers([good, damaged])


class _ImportAttempts:
    """A meta path finder that records every module an import looks for, and finds none."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        self.names.append(name)


def test_reading_a_page_attempts_no_import() -> None:
    """A Python number passed to a compute function makes pyarrow try to import optional modules
    (dateutil, pandas) that are not installed, on every call: ~0.1 ms each. The reader passes
    Arrow scalars only."""
    page = [
        _stored([Answer(link_id=f"phq9-{i}", value=(i + n) % 4) for i in range(1, 10)])
        for n in range(50)
    ]
    assert answer_columns(page) is not None  # anything imported once, imported now
    attempts = _ImportAttempts()
    sys.meta_path.insert(0, attempts)
    try:
        assert answer_columns(page) is not None
    finally:
        sys.meta_path.remove(attempts)
    assert attempts.names == []
