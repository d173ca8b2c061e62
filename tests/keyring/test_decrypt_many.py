"""Decrypting many fields at once (`OwnerKeys.decrypt_many`, the research export's path) opens
what `OwnerKeys` encrypts and refuses what `OwnerKeys.decrypt` refuses, with the same errors and
the same decryption-failed log line, naming the failed row."""

from __future__ import annotations

import logging
import uuid

import pytest

from backend.crypto import generate_dek, wrap_dek
from backend.crypto.errors import TamperedCiphertextError, UnknownKeyError, UnsupportedFormatError
from backend.crypto.kek import generate_key_material, parse_key_material
from backend.keyring.service import Keyring, OwnerKeys

TABLE, COLUMN = "questionnaire_responses", "answers_ct"


def _owner() -> tuple[Keyring, uuid.UUID, dict[int, tuple[str, bytes]], OwnerKeys]:
    keyring = Keyring(parse_key_material(generate_key_material()))
    owner = uuid.uuid4()
    wrapped = {}
    for version in (1, 2):
        dek = wrap_dek(keyring.kek, generate_dek(), patient_id=str(owner), dek_version=version)
        wrapped[version] = (dek.kek_id, dek.wrapped_dek)
    writer = OwnerKeys(keyring, owner, wrapped, active_version=2, generation=0)
    return keyring, owner, wrapped, writer


def _reader(keyring: Keyring, owner: uuid.UUID, wrapped: dict[int, tuple[str, bytes]]) -> OwnerKeys:
    return OwnerKeys(keyring, owner, wrapped, active_version=None, generation=0)


def test_opens_every_live_version_and_binds_row_column_and_owner() -> None:
    keyring, owner, wrapped, writer = _owner()
    reader = _reader(keyring, owner, wrapped)
    rows = [str(uuid.uuid4()) for _ in range(3)]
    old = OwnerKeys(keyring, owner, {1: wrapped[1]}, active_version=1, generation=0)
    blobs = [
        writer.encrypt(table=TABLE, column=COLUMN, row_id=rows[0], plaintext=b"a"),
        old.encrypt(table=TABLE, column=COLUMN, row_id=rows[1], plaintext=b"b"),
        writer.encrypt(table=TABLE, column=COLUMN, row_id=rows[2], plaintext=b""),
    ]
    assert reader.decrypt_many(table=TABLE, column=COLUMN, row_ids=rows, blobs=blobs) == [
        b"a",
        b"b",
        b"",
    ]
    with pytest.raises(TamperedCiphertextError):
        reader.decrypt_many(table=TABLE, column=COLUMN, row_ids=rows[::-1], blobs=blobs)
    with pytest.raises(TamperedCiphertextError):
        reader.decrypt_many(table=TABLE, column="score_ct", row_ids=rows, blobs=blobs)
    stranger = _reader(keyring, uuid.uuid4(), wrapped)
    with pytest.raises(TamperedCiphertextError):
        stranger.decrypt_many(table=TABLE, column=COLUMN, row_ids=rows, blobs=blobs)


def test_failures_raise_the_keyrings_errors_and_log_the_alert_for_the_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keyring, owner, wrapped, writer = _owner()
    rows = [str(uuid.uuid4()) for _ in range(2)]
    blobs = [
        writer.encrypt(table=TABLE, column=COLUMN, row_id=row, plaintext=b"answers") for row in rows
    ]
    reader = _reader(keyring, owner, wrapped)
    flipped = bytearray(blobs[1])
    flipped[-1] ^= 1
    with caplog.at_level(logging.ERROR), pytest.raises(TamperedCiphertextError):
        reader.decrypt_many(
            table=TABLE, column=COLUMN, row_ids=rows, blobs=[blobs[0], bytes(flipped)]
        )
    alerts = [r for r in caplog.records if r.getMessage() == "decryption failed"]
    assert [r.fields["row_id"] for r in alerts] == [rows[1]]  # type: ignore[attr-defined]
    for broken, error in (
        (blobs[0][:30], TamperedCiphertextError),
        (b"\x07" + blobs[0][1:], UnsupportedFormatError),
        (b"", UnsupportedFormatError),
    ):
        with pytest.raises(error):
            reader.decrypt_many(table=TABLE, column=COLUMN, row_ids=rows[:1], blobs=[broken])
    without_v2 = _reader(keyring, owner, {1: wrapped[1]})
    with pytest.raises(UnknownKeyError):
        without_v2.decrypt_many(table=TABLE, column=COLUMN, row_ids=rows[:1], blobs=blobs[:1])


def test_a_missing_row_id_is_refused() -> None:
    keyring, owner, wrapped, writer = _owner()
    blob = writer.encrypt(table=TABLE, column=COLUMN, row_id="r", plaintext=b"x")
    reader = _reader(keyring, owner, wrapped)
    with pytest.raises(ValueError, match="row"):
        reader.decrypt_many(table=TABLE, column=COLUMN, row_ids=[], blobs=[blob])
    with pytest.raises(ValueError, match="row_id"):
        reader.decrypt_many(table=TABLE, column=COLUMN, row_ids=[""], blobs=[blob])


def test_columns_of_the_same_rows_open_as_each_column_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`decrypt_columns` (the export's path: answers and score of each response) binds each
    value to its own column and row, like `decrypt_many` column by column."""
    keyring, owner, wrapped, writer = _owner()
    reader = _reader(keyring, owner, wrapped)
    rows = [str(uuid.uuid4()) for _ in range(4)]
    answers = [
        writer.encrypt(table=TABLE, column="answers_ct", row_id=r, plaintext=f"a{i}".encode())
        for i, r in enumerate(rows)
    ]
    scores = [
        writer.encrypt(table=TABLE, column="score_ct", row_id=r, plaintext=f"s{i}".encode())
        for i, r in enumerate(rows)
    ]
    columns = [("answers_ct", answers), ("score_ct", scores)]
    opened = reader.decrypt_columns(table=TABLE, columns=columns, row_ids=rows)
    assert opened == [
        reader.decrypt_many(table=TABLE, column=c, row_ids=rows, blobs=b) for c, b in columns
    ]
    assert opened == [[f"a{i}".encode() for i in range(4)], [f"s{i}".encode() for i in range(4)]]
    assert reader.decrypt_columns(table=TABLE, columns=[], row_ids=rows) == []
    with pytest.raises(TamperedCiphertextError):  # a value moved to the other column
        reader.decrypt_columns(
            table=TABLE, columns=[("answers_ct", scores), ("score_ct", answers)], row_ids=rows
        )
    with pytest.raises(TamperedCiphertextError):  # rows swapped within a column
        reader.decrypt_columns(
            table=TABLE,
            columns=[("answers_ct", answers), ("score_ct", [scores[1], scores[0], *scores[2:]])],
            row_ids=rows,
        )
    with pytest.raises(ValueError, match="row"):
        reader.decrypt_columns(table=TABLE, columns=[("score_ct", scores[:3])], row_ids=rows)
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(TamperedCiphertextError):
        reader.decrypt_columns(
            table=TABLE,
            columns=[("answers_ct", answers), ("score_ct", [*scores[:3], scores[3][:-1]])],
            row_ids=rows,
        )
    alerts = [r for r in caplog.records if r.getMessage() == "decryption failed"]
    assert [(r.fields["column"], r.fields["row_id"]) for r in alerts] == [  # type: ignore[attr-defined]
        ("score_ct", rows[3])
    ]
