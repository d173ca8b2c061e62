"""Questionnaire answers as `responses.service` stores them (msgpack of a tuple of
`questionnaires.answers.Answer`), read back for an export.

Two readers, the same answers:

- `answer_columns` reads a whole page of documents with Arrow compute, no Python object per
  answer, when every document has the compact form the submission path writes for numeric
  items: an array of two-key maps, `{"linkId": <text of at most 31 bytes>, "value": <integer
  0..127>}`, keys in that order. A page of PHQ-9s is ~37,000 answers: decoding them into
  objects and reading them back into columns cost more than decrypting the page;
- `decode_answers` decodes any document with msgspec (free text, decimals, booleans, larger
  numbers, other key orders): `answer_columns` returns None for a page it cannot read whole,
  and the caller uses this one.

Why the columnar reading is exact: a document matching the form is an array header, then, for
each answer, the bytes `82 a6 "linkId"` (map of two, key "linkId"), the link id as a fixstr,
`a5 "value"` and a positive fixint. Splitting at `82 a6 "linkId"` gives a header piece and
one piece per answer whatever the link ids hold; the answer count in the header must equal the
number of pieces, and each piece must be exactly a fixstr whose length byte matches, `a5
"value"` and one byte under 0x80. Were a link id to contain the split bytes, its answer would
make two pieces and the count would not match. So a page that passes every check is what
msgspec reads from it (`tests/exports/test_stored_answers.py` compares the two readers).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from backend.domain.exports.columnar import AnswerColumns, FlatAnswers


class StoredAnswer(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """An answer as `responses.service` stores it (msgpack of `questionnaires.answers.Answer`)."""

    link_id: str
    value: bool | int | float | str


_decode_many_answers = msgspec.msgpack.Decoder(list[tuple[StoredAnswer, ...]]).decode
_DECODE_CHUNK: Final = 128
"""Responses whose answers are decoded at a time: their tuples are dropped as soon as the
answers are in one flat list, so they never pile up into the garbage collector's thresholds."""


def msgpack_array(items: Sequence[bytes]) -> bytes:
    """Many msgpack documents as one msgpack array (an array32 header, then the documents):
    one decoder call for many documents instead of one each."""
    return b"\xdd" + len(items).to_bytes(4, "big") + b"".join(items)


def decode_answers(plaintexts: Sequence[bytes]) -> FlatAnswers:
    """The answers of many responses, decoded (each response's document checked: an array of
    answers) and kept in one list (`columnar.FlatAnswers`)."""
    counts: list[int] = []
    answers: list[StoredAnswer] = []
    for start in range(0, len(plaintexts), _DECODE_CHUNK):
        nested = _decode_many_answers(msgpack_array(plaintexts[start : start + _DECODE_CHUNK]))
        counts += map(len, nested)
        answers += chain.from_iterable(nested)
    return FlatAnswers(counts, answers)


_ANSWER_START: Final = b"\x82\xa6linkId"
"""A map of two entries, then the key "linkId" as a fixstr."""
_VALUE_KEY: Final = pa.scalar(b"\xa5value", pa.binary())
# Arrow scalars in compute calls (`columnar`: Python numbers make pyarrow try optional imports).
_FIXARRAY: Final = pa.scalar(0x90, pa.int32())
_FIXARRAY_LAST: Final = pa.scalar(0x9F, pa.int32())
_ARRAY16: Final = pa.scalar(0xDC, pa.int32())
_BYTE: Final = pa.scalar(256, pa.int32())
_FIXSTR: Final = pa.scalar(0xA0, pa.int32())
_FIXSTR_LAST: Final = pa.scalar(0xBF, pa.int32())
_FIXINT_END: Final = pa.scalar(0x80, pa.int32())
_ZERO: Final = pa.scalar(0, pa.int32())
_ONE: Final = pa.scalar(1, pa.int32())
_THREE: Final = pa.scalar(3, pa.int32())
_FRAMING: Final = pa.scalar(8, pa.int32())
"""Bytes of an answer's piece besides its link id: fixstr length byte, `a5 "value"`, value."""


def _edge_bytes(values: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The first, second and last byte of each binary value (none empty; the second is the
    last for a value of one byte), as int32: taken from the data buffer at the value offsets
    (slicing bytes out of each value was ~4 times slower)."""
    _, offsets, data = values.buffers()
    bounds = pa.Array.from_buffers(pa.int32(), len(values) + 1, [None, offsets], values.offset)
    raw = pa.Array.from_buffers(pa.uint8(), data.size, [None, data])
    starts = bounds.slice(0, len(values))
    lasts = pc.subtract(bounds.slice(1), _ONE)
    seconds = pc.min_element_wise(pc.add(starts, _ONE), lasts)
    return (
        pc.take(raw, starts).cast(pa.int32()),
        pc.take(raw, seconds).cast(pa.int32()),
        pc.take(raw, lasts).cast(pa.int32()),
    )


def _all(mask: pa.Array) -> bool:
    return bool(pc.all(mask).as_py()) if len(mask) else True


def answer_columns(plaintexts: Sequence[bytes]) -> AnswerColumns | None:
    """The answers of many responses as columns, read by Arrow, or None unless every document
    has the compact numeric form (then `decode_answers` reads them)."""
    documents = pa.array(plaintexts, pa.binary())
    pieces = pc.split_pattern(documents, pattern=_ANSWER_START)
    counts = pc.subtract(pc.list_value_length(pieces), _ONE)
    headers = pc.list_element(pieces, _ZERO)
    header_bytes = pc.binary_length(headers)
    is_fixarray = pc.equal(header_bytes, _ONE)
    is_array16 = pc.equal(header_bytes, _THREE)
    if not _all(pc.or_(is_fixarray, is_array16)):
        return None  # array32, or not an array: msgspec reads them
    first, second, last = _edge_bytes(headers)
    # fixarray: one byte, 0x90 + count (up to 15); array16: 0xdc, then the count in two bytes
    fixarray = pc.and_(
        pc.equal(pc.subtract(first, _FIXARRAY), counts), pc.less_equal(first, _FIXARRAY_LAST)
    )
    array16 = pc.and_(
        pc.equal(first, _ARRAY16), pc.equal(pc.add(pc.multiply(second, _BYTE), last), counts)
    )
    if not _all(pc.or_(pc.and_(is_fixarray, fixarray), pc.and_(is_array16, array16))):
        return None
    answers = pc.list_flatten(pc.list_slice(pieces, 1))
    if len(answers):
        length = pc.binary_length(answers)
        if not _all(pc.greater_equal(length, _FRAMING)):
            return None
        size, _, value = _edge_bytes(answers)
        if not _all(
            pc.and_(
                pc.and_(pc.greater_equal(size, _FIXSTR), pc.less_equal(size, _FIXSTR_LAST)),
                pc.equal(pc.subtract(size, _FIXSTR), pc.subtract(length, _FRAMING)),
            )
        ):
            return None
        if not _all(pc.equal(pc.binary_slice(answers, -7, -1), _VALUE_KEY)):
            return None
        if not _all(pc.less(value, _FIXINT_END)):
            return None
        links = pc.binary_slice(answers, 1, -7)
    else:
        value = pa.array([], pa.int32())
        links = pa.array([], pa.binary())
    try:
        variables = links.cast(pa.string())  # checks the UTF-8, as msgspec does
    except pa.ArrowInvalid:
        return None
    return AnswerColumns.of(counts, variables, value.cast(pa.float64()))
