"""The export's field opener decrypts what `OwnerKeys` encrypts and refuses what `OwnerKeys`
refuses, with the same errors and the same decryption-failed log line."""

from __future__ import annotations

import logging
import uuid

import pytest

from backend.crypto import generate_dek, wrap_dek
from backend.crypto.errors import TamperedCiphertextError, UnknownKeyError, UnsupportedFormatError
from backend.crypto.kek import generate_key_material, parse_key_material
from backend.domain.exports.opening import FieldOpener, field_prefix, uuid_text
from backend.keyring.service import Keyring, OwnerKeys

TABLE, COLUMN = "questionnaire_responses", "answers_ct"
PREFIX = field_prefix(TABLE, COLUMN)


def _owner() -> tuple[Keyring, uuid.UUID, dict[int, tuple[str, bytes]], OwnerKeys]:
    keyring = Keyring(parse_key_material(generate_key_material()))
    owner = uuid.uuid4()
    wrapped = {}
    for version in (1, 2):
        dek = wrap_dek(keyring.kek, generate_dek(), patient_id=str(owner), dek_version=version)
        wrapped[version] = (dek.kek_id, dek.wrapped_dek)
    writer = OwnerKeys(keyring, owner, wrapped, active_version=2, generation=0)
    return keyring, owner, wrapped, writer


def test_opens_every_live_version_and_binds_row_column_and_owner() -> None:
    keyring, owner, wrapped, writer = _owner()
    opener = FieldOpener(keyring, owner, wrapped, keyring.cache.generation)
    row = str(uuid.uuid4())
    blob = writer.encrypt(table=TABLE, column=COLUMN, row_id=row, plaintext=b"answers")
    assert opener.open(PREFIX, TABLE, COLUMN, row, blob) == b"answers"
    old = OwnerKeys(keyring, owner, {1: wrapped[1]}, active_version=1, generation=0)
    older = old.encrypt(table=TABLE, column=COLUMN, row_id=row, plaintext=b"v1")
    assert opener.open(PREFIX, TABLE, COLUMN, row, older) == b"v1"
    with pytest.raises(TamperedCiphertextError):
        opener.open(PREFIX, TABLE, COLUMN, str(uuid.uuid4()), blob)
    other = field_prefix(TABLE, "score_ct")
    with pytest.raises(TamperedCiphertextError):
        opener.open(other, TABLE, "score_ct", row, blob)
    stranger = FieldOpener(keyring, uuid.uuid4(), wrapped, keyring.cache.generation)
    with pytest.raises(TamperedCiphertextError):
        stranger.open(PREFIX, TABLE, COLUMN, row, blob)


def test_failures_raise_the_keyrings_errors_and_log_the_alert(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keyring, owner, wrapped, writer = _owner()
    row = str(uuid.uuid4())
    blob = writer.encrypt(table=TABLE, column=COLUMN, row_id=row, plaintext=b"answers")
    opener = FieldOpener(keyring, owner, wrapped, keyring.cache.generation)
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    with caplog.at_level(logging.ERROR), pytest.raises(TamperedCiphertextError):
        opener.open(PREFIX, TABLE, COLUMN, row, bytes(flipped))
    assert any(r.getMessage() == "decryption failed" for r in caplog.records)
    with pytest.raises(TamperedCiphertextError):
        opener.open(PREFIX, TABLE, COLUMN, row, blob[:30])
    with pytest.raises(UnsupportedFormatError):
        opener.open(PREFIX, TABLE, COLUMN, row, b"\x07" + blob[1:])
    without_v2 = FieldOpener(keyring, owner, {1: wrapped[1]}, keyring.cache.generation)
    with pytest.raises(UnknownKeyError):
        without_v2.open(PREFIX, TABLE, COLUMN, row, blob)


def test_uuid_text_is_the_canonical_form() -> None:
    value = uuid.uuid4()
    assert uuid_text(value) == str(value)
    assert uuid_text(value.hex) == str(value)
    assert uuid_text(str(value)) == str(value)
