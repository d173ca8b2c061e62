"""Field ciphertexts (engineering-notes §D.7) and per-patient data keys wrapped by a KEK (§D.2)."""

import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from backend.crypto import (
    DecryptionError,
    EncryptionError,
    FieldHeader,
    KeyMaterialError,
    LocalKekProvider,
    TamperedCiphertextError,
    UnknownKeyError,
    UnsupportedFormatError,
    WrappedDek,
    build_field_aad,
    decrypt_field,
    dek_wrapping_aad,
    encrypt_field,
    generate_dek,
    open_columns,
    open_field,
    open_fields,
    parse_field,
    rewrap_dek,
    seal_field,
    unwrap_dek,
    wrap_dek,
)
from backend.crypto.envelope import MAX_FIELD_PLAINTEXT_BYTES
from backend.crypto.format import HEADER_BYTES, OVERHEAD_BYTES

DEK = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
OTHER_DEK = bytes.fromhex("ffeeddccbbaa99887766554433221100" * 2)
PLAINTEXT = b'{"phq9": [3, 2, 3, 1, 2, 3, 2, 1, 1], "note": "slept badly"}'


# Any values: the tests pass these as keyword arguments and also change one at a time.
WHERE: dict[str, Any] = {
    "table": "responses",
    "column": "answers",
    "row_id": "0190d6c2-8c53-7cc0-9d4e-3b1a5f2e9a10",
    "patient_id": "0190d6c2-0000-7000-8000-00000000aaaa",
}


def _encrypt(plaintext: bytes = PLAINTEXT, dek: bytes = DEK, dek_version: int = 1) -> bytes:
    return encrypt_field(plaintext, dek=dek, dek_version=dek_version, **WHERE)


def _lp(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


# --- round trips ---


def test_round_trip_with_a_dek() -> None:
    assert decrypt_field(_encrypt(), dek=DEK, **WHERE) == PLAINTEXT


def test_round_trip_with_a_lookup_called_once_with_the_header_version() -> None:
    calls: list[int] = []

    def lookup(version: int) -> bytes:
        calls.append(version)
        return DEK

    assert decrypt_field(_encrypt(dek_version=7), dek_lookup=lookup, **WHERE) == PLAINTEXT
    assert calls == [7]


ids = st.text(min_size=1, max_size=80)


@given(
    plaintext=st.binary(max_size=4096),
    dek_version=st.integers(min_value=0, max_value=2**32 - 1),
    table=ids,
    column=ids,
    row_id=ids,
    patient_id=ids,
)
def test_any_plaintext_and_ids_round_trip(
    plaintext: bytes, dek_version: int, table: str, column: str, row_id: str, patient_id: str
) -> None:
    where: dict[str, Any] = {
        "table": table,
        "column": column,
        "row_id": row_id,
        "patient_id": patient_id,
    }
    blob = encrypt_field(plaintext, dek=DEK, dek_version=dek_version, **where)
    assert len(blob) == len(plaintext) + OVERHEAD_BYTES
    assert parse_field(blob)[0].dek_version == dek_version
    assert decrypt_field(blob, dek=DEK, **where) == plaintext


def test_layout_matches_the_spec_byte_for_byte() -> None:
    blob = _encrypt(dek_version=0x01020304)
    assert blob[0] == 0x01  # format version
    assert blob[1] == 0x01  # AES-256-GCM
    assert blob[2:6] == b"\x01\x02\x03\x04"  # dek_version, big-endian
    nonce = blob[6:18]
    aad = (
        blob[:18]
        + _lp(b"responses")
        + _lp(b"answers")
        + _lp(WHERE["row_id"].encode())
        + _lp(WHERE["patient_id"].encode())
    )
    # Independent of our code: plain AES-GCM with the AAD written out from §D.7.
    assert AESGCM(DEK).decrypt(nonce, blob[18:], aad) == PLAINTEXT


def test_decrypts_a_blob_built_by_hand_from_the_spec() -> None:
    nonce = bytes(range(12))
    header = b"\x01\x01" + (3).to_bytes(4, "big") + nonce
    aad = header + b"".join(
        _lp(v.encode())
        for v in (WHERE["table"], WHERE["column"], WHERE["row_id"], WHERE["patient_id"])
    )
    blob = header + AESGCM(DEK).encrypt(nonce, b"hand made", aad)
    assert decrypt_field(blob, dek=DEK, **WHERE) == b"hand made"


def test_nonces_are_fresh_so_equal_plaintexts_give_different_ciphertexts() -> None:
    blobs = {_encrypt() for _ in range(50)}
    assert len(blobs) == 50
    assert len({blob[6:18] for blob in blobs}) == 50


def test_plaintext_does_not_appear_in_the_ciphertext() -> None:
    assert b"slept badly" not in _encrypt()


def test_empty_plaintext_round_trips() -> None:
    assert decrypt_field(_encrypt(b""), dek=DEK, **WHERE) == b""


# --- tamper, truncation, moving ---

BLOB = encrypt_field(PLAINTEXT, dek=DEK, dek_version=1, **WHERE)


@pytest.mark.parametrize("bit", range(len(BLOB) * 8))
def test_flipping_any_bit_is_detected(bit: int) -> None:
    damaged = bytearray(BLOB)
    damaged[bit // 8] ^= 1 << (bit % 8)
    if bit // 8 < 2:  # version or suite byte: refused before any key is used
        expected: type[DecryptionError] = UnsupportedFormatError
    else:  # dek_version, nonce, ciphertext or tag
        expected = TamperedCiphertextError
    with pytest.raises(expected):
        decrypt_field(bytes(damaged), dek=DEK, **WHERE)


@pytest.mark.parametrize("length", range(len(BLOB)))
def test_every_truncation_is_detected(length: int) -> None:
    with pytest.raises(DecryptionError):
        decrypt_field(BLOB[:length], dek=DEK, **WHERE)


@pytest.mark.parametrize("length", [2, 6, 18, 33])
def test_truncation_of_a_known_format_is_reported_as_tampering(length: int) -> None:
    with pytest.raises(TamperedCiphertextError, match="truncated"):
        decrypt_field(BLOB[:length], dek=DEK, **WHERE)


def test_appended_bytes_are_detected() -> None:
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(BLOB + b"\x00", dek=DEK, **WHERE)


def _with_version(blob: bytes, version: int) -> bytes:
    return blob[:2] + version.to_bytes(4, "big") + blob[6:]


def test_changed_dek_version_with_a_single_dek_is_tampering() -> None:
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(_with_version(BLOB, 2), dek=DEK, **WHERE)


def test_changed_dek_version_pointing_at_another_existing_key_is_tampering() -> None:
    keyring = {1: DEK, 2: OTHER_DEK}
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(_with_version(BLOB, 2), dek_lookup=keyring.get, **WHERE)


def test_changed_dek_version_pointing_at_the_same_key_is_still_tampering() -> None:
    # The header is part of the AAD, so relabelling fails even when both versions share a key.
    keyring = {1: DEK, 2: DEK}
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(_with_version(BLOB, 2), dek_lookup=keyring.get, **WHERE)


def test_dek_version_that_does_not_exist_is_an_unknown_key() -> None:
    keyring = {1: DEK}
    with pytest.raises(UnknownKeyError, match="version 9"):
        decrypt_field(_with_version(BLOB, 9), dek_lookup=keyring.get, **WHERE)


def test_lookup_raising_key_error_is_an_unknown_key() -> None:
    keyring = {1: DEK}
    with pytest.raises(UnknownKeyError):
        decrypt_field(_with_version(BLOB, 9), dek_lookup=keyring.__getitem__, **WHERE)


def test_lookup_raising_unknown_key_error_passes_through() -> None:
    def destroyed(version: int) -> bytes:
        raise UnknownKeyError(f"data key version {version} was destroyed")

    with pytest.raises(UnknownKeyError, match="destroyed"):
        decrypt_field(BLOB, dek_lookup=destroyed, **WHERE)


def test_wrong_dek_is_tampering() -> None:
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(BLOB, dek=OTHER_DEK, **WHERE)


def test_swapping_two_rows_ciphertexts_is_detected() -> None:
    row_a = {**WHERE, "row_id": "row-a"}
    row_b = {**WHERE, "row_id": "row-b"}
    blob_a = encrypt_field(b"PHQ-9 = 4", dek=DEK, dek_version=1, **row_a)
    blob_b = encrypt_field(b"PHQ-9 = 22", dek=DEK, dek_version=1, **row_b)
    assert decrypt_field(blob_a, dek=DEK, **row_a) == b"PHQ-9 = 4"
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(blob_b, dek=DEK, **row_a)
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(blob_a, dek=DEK, **row_b)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("table", "checkins"),
        ("column", "free_text"),
        ("row_id", "0190d6c2-8c53-7cc0-9d4e-3b1a5f2e9a11"),
        ("patient_id", "0190d6c2-0000-7000-8000-00000000bbbb"),
    ],
)
def test_moving_a_ciphertext_to_another_table_column_row_or_patient_is_detected(
    field: str, value: str
) -> None:
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(BLOB, dek=DEK, **{**WHERE, field: value})


def test_moving_to_another_patient_with_that_patients_key_is_detected() -> None:
    other = {**WHERE, "patient_id": "someone-else"}
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(BLOB, dek=OTHER_DEK, **other)


def test_length_prefixes_keep_adjacent_ids_from_sliding() -> None:
    # Without prefixes "ab"+"c" and "a"+"bc" would authenticate the same bytes.
    blob = encrypt_field(
        b"x", dek=DEK, dek_version=1, table="t", column="ab", row_id="c", patient_id="p"
    )
    with pytest.raises(TamperedCiphertextError):
        decrypt_field(blob, dek=DEK, table="t", column="a", row_id="bc", patient_id="p")


def test_unknown_format_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError, match="version 0x02"):
        decrypt_field(b"\x02" + BLOB[1:], dek=DEK, **WHERE)


@pytest.mark.parametrize("suite", [0x00, 0x02, 0x03, 0xFF])
def test_unknown_or_reserved_suite_is_unsupported(suite: int) -> None:
    with pytest.raises(UnsupportedFormatError, match="suite"):
        decrypt_field(BLOB[:1] + bytes([suite]) + BLOB[2:], dek=DEK, **WHERE)


def test_empty_blob_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError):
        decrypt_field(b"", dek=DEK, **WHERE)


# --- argument errors ---


@pytest.mark.parametrize("bad_key", [b"", b"\x00" * 16, b"\x00" * 31, b"\x00" * 33])
def test_data_keys_must_be_256_bit(bad_key: bytes) -> None:
    with pytest.raises(KeyMaterialError):
        _encrypt(dek=bad_key)
    with pytest.raises(KeyMaterialError):
        decrypt_field(BLOB, dek=bad_key, **WHERE)
    with pytest.raises(KeyMaterialError):
        decrypt_field(BLOB, dek_lookup=lambda _: bad_key, **WHERE)


def test_exactly_one_of_dek_and_lookup() -> None:
    with pytest.raises(TypeError):
        decrypt_field(BLOB, **WHERE)
    with pytest.raises(TypeError):
        decrypt_field(BLOB, dek=DEK, dek_lookup=lambda _: DEK, **WHERE)


@pytest.mark.parametrize("field", ["table", "column", "row_id", "patient_id"])
def test_empty_binding_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        encrypt_field(PLAINTEXT, dek=DEK, dek_version=1, **{**WHERE, field: ""})


@pytest.mark.parametrize("version", [-1, 2**32])
def test_dek_version_must_fit_32_bits(version: int) -> None:
    with pytest.raises(ValueError, match="dek_version"):
        _encrypt(dek_version=version)


def test_plaintext_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        encrypt_field("text", dek=DEK, dek_version=1, **WHERE)  # type: ignore[arg-type]


def test_oversized_plaintext_is_an_encryption_error() -> None:
    class Huge(bytes):
        # Stands in for a 2 GiB value without allocating one.
        def __len__(self) -> int:
            return MAX_FIELD_PLAINTEXT_BYTES + 1

    with pytest.raises(EncryptionError, match="too large"):
        _encrypt(Huge(b"x"))


def test_header_round_trips() -> None:
    header = FieldHeader(dek_version=42, nonce=b"\x07" * 12)
    raw = header.to_bytes()
    assert len(raw) == HEADER_BYTES
    assert struct.unpack(">BBI", raw[:6]) == (1, 1, 42)
    parsed, rest = parse_field(raw + b"\x00" * 16)
    assert parsed == header
    assert rest == b"\x00" * 16


# --- data keys wrapped by the KEK ---

PATIENT = "0190d6c2-0000-7000-8000-00000000aaaa"


def test_generated_deks_are_fresh_256_bit_keys() -> None:
    keys = {generate_dek() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(key) == 32 for key in keys)


def test_wrap_then_unwrap_a_patient_key() -> None:
    kek = LocalKekProvider.generate("kek-a")
    dek = generate_dek()
    stored = wrap_dek(kek, dek, patient_id=PATIENT, dek_version=1)
    assert stored.kek_id == "kek-a"
    assert stored.dek_version == 1
    assert dek not in stored.wrapped_dek
    assert (
        unwrap_dek(
            kek, patient_id=PATIENT, dek_version=1, kek_id="kek-a", wrapped_dek=stored.wrapped_dek
        )
        == dek
    )


def test_wrapping_aad_is_length_prefixed_label_patient_version_kid() -> None:
    assert dek_wrapping_aad(patient_id="p1", dek_version=2, kek_id="k") == (
        _lp(b"pk1") + _lp(b"p1") + _lp(b"\x00\x00\x00\x02") + _lp(b"k")
    )


def _stored() -> tuple[LocalKekProvider, bytes, WrappedDek]:
    kek = LocalKekProvider.generate("kek-a")
    dek = generate_dek()
    return kek, dek, wrap_dek(kek, dek, patient_id=PATIENT, dek_version=1)


def test_wrapped_key_copied_to_another_patient_fails() -> None:
    kek, _, stored = _stored()
    with pytest.raises(TamperedCiphertextError):
        unwrap_dek(
            kek,
            patient_id="someone-else",
            dek_version=1,
            kek_id=stored.kek_id,
            wrapped_dek=stored.wrapped_dek,
        )


def test_wrapped_key_relabelled_with_another_version_fails() -> None:
    kek, _, stored = _stored()
    with pytest.raises(TamperedCiphertextError):
        unwrap_dek(
            kek,
            patient_id=PATIENT,
            dek_version=2,
            kek_id=stored.kek_id,
            wrapped_dek=stored.wrapped_dek,
        )


def test_wrapped_key_under_the_wrong_kek_fails() -> None:
    _, _, stored = _stored()
    wrong = LocalKekProvider.generate("kek-a")
    with pytest.raises(TamperedCiphertextError):
        unwrap_dek(
            wrong,
            patient_id=PATIENT,
            dek_version=1,
            kek_id=stored.kek_id,
            wrapped_dek=stored.wrapped_dek,
        )


def test_wrapped_key_naming_an_unloaded_kek_is_an_unknown_key() -> None:
    kek, _, stored = _stored()
    with pytest.raises(UnknownKeyError):
        unwrap_dek(
            kek,
            patient_id=PATIENT,
            dek_version=1,
            kek_id="kek-retired",
            wrapped_dek=stored.wrapped_dek,
        )


def test_kek_rotation_rewraps_under_the_new_key_and_the_old_key_can_go() -> None:
    old_key, new_key = AESGCM.generate_key(bit_length=256), AESGCM.generate_key(bit_length=256)
    before = LocalKekProvider({"old": old_key}, active_kid="old")
    dek = generate_dek()
    stored = wrap_dek(before, dek, patient_id=PATIENT, dek_version=1)
    field = encrypt_field(b"answer", dek=dek, dek_version=1, **WHERE)

    during = LocalKekProvider({"new": new_key, "old": old_key}, active_kid="new")
    rewrapped = rewrap_dek(
        during,
        patient_id=PATIENT,
        dek_version=1,
        kek_id=stored.kek_id,
        wrapped_dek=stored.wrapped_dek,
    )
    assert rewrapped.kek_id == "new"

    after = LocalKekProvider({"new": new_key}, active_kid="new")
    recovered = unwrap_dek(
        after,
        patient_id=PATIENT,
        dek_version=1,
        kek_id=rewrapped.kek_id,
        wrapped_dek=rewrapped.wrapped_dek,
    )
    assert decrypt_field(field, dek=recovered, **WHERE) == b"answer"


class _RotatingKek:
    """A KMS-like provider whose active key changes under the caller once."""

    def __init__(self) -> None:
        key = AESGCM.generate_key(bit_length=256)
        self._inner = {
            "a": LocalKekProvider({"a": key}, active_kid="a"),
            "b": LocalKekProvider({"b": key}, active_kid="b"),
        }
        self._wraps = 0

    @property
    def active_kid(self) -> str:
        return "a"

    def kids(self) -> frozenset[str]:
        return frozenset(self._inner)

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        self._wraps += 1
        return self._inner["b" if self._wraps == 1 else "a"].wrap(dek, aad)

    def unwrap(self, kid: str, wrapped: bytes, aad: bytes) -> bytes:
        return self._inner[kid].unwrap(kid, wrapped, aad)


def test_wrap_retries_when_the_active_kek_changes_underneath() -> None:
    kek = _RotatingKek()
    dek = generate_dek()
    stored = wrap_dek(kek, dek, patient_id=PATIENT, dek_version=1)
    assert stored.kek_id == "a"
    assert (
        unwrap_dek(
            kek, patient_id=PATIENT, dek_version=1, kek_id="a", wrapped_dek=stored.wrapped_dek
        )
        == dek
    )


class _BrokenKek(_RotatingKek):
    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        return self._inner["a"].wrap(bytes(32), aad)  # loses the key


def test_wrap_refuses_a_provider_that_does_not_round_trip() -> None:
    with pytest.raises(KeyMaterialError, match="round-trip"):
        wrap_dek(_BrokenKek(), generate_dek(), patient_id=PATIENT, dek_version=1)


class _AlwaysRotatingKek(_RotatingKek):
    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        return self._inner["b"].wrap(dek, aad)


def test_wrap_gives_up_if_the_active_kek_never_settles() -> None:
    with pytest.raises(KeyMaterialError, match="kept changing"):
        wrap_dek(_AlwaysRotatingKek(), generate_dek(), patient_id=PATIENT, dek_version=1)


# --- errors never carry secrets ---


def test_error_messages_contain_no_plaintext_or_key_material() -> None:
    secret = b"MRN 00042 Jane Doe suicidal ideation"
    blob = _encrypt(secret)
    kek, dek, stored = _stored()
    failures: list[Exception] = []
    attempts = [
        lambda: decrypt_field(blob, dek=OTHER_DEK, **WHERE),
        lambda: decrypt_field(blob[:-1], dek=DEK, **WHERE),
        lambda: decrypt_field(blob[:20], dek=DEK, **WHERE),
        lambda: decrypt_field(b"\x09" + blob[1:], dek=DEK, **WHERE),
        lambda: decrypt_field(_with_version(blob, 5), dek_lookup={1: DEK}.get, **WHERE),
        lambda: decrypt_field(blob, dek=DEK, **{**WHERE, "row_id": "x"}),
        lambda: decrypt_field(blob, dek=secret[:31], **WHERE),
        lambda: encrypt_field(secret, dek=secret[:30], dek_version=1, **WHERE),
        lambda: unwrap_dek(
            kek, patient_id="p2", dek_version=1, kek_id="kek-a", wrapped_dek=stored.wrapped_dek
        ),
    ]
    for attempt in attempts:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - each is checked below
            attempt()
        failures.append(caught.value)
    forbidden = [secret, DEK, OTHER_DEK, dek, blob, stored.wrapped_dek]
    for failure in failures:
        text = f"{failure!s} {failure!r}"
        assert failure.__cause__ is None
        for value in forbidden:
            assert value.hex() not in text
            assert value[:8].hex() not in text
            assert repr(value)[2:20] not in text
        assert "Jane" not in text
        assert "MRN" not in text


def test_non_bytes_blob_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError):
        decrypt_field("not bytes", dek=DEK, **WHERE)  # type: ignore[arg-type]


def test_blob_may_arrive_as_memoryview_from_a_driver() -> None:
    assert decrypt_field(memoryview(BLOB), dek=DEK, **WHERE) == PLAINTEXT  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dek_version": 1, "nonce": b"\x00" * 11},
        {"dek_version": 1, "nonce": b"\x00" * 12, "version": 256},
        {"dek_version": 1, "nonce": b"\x00" * 12, "suite": -1},
    ],
)
def test_header_fields_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        FieldHeader(**kwargs)  # type: ignore[arg-type]


def test_aad_needs_a_full_header() -> None:
    with pytest.raises(ValueError, match="header"):
        build_field_aad(b"\x01\x01", table="t", column="c", row_id="r", patient_id="p")


@pytest.mark.parametrize(("patient_id", "dek_version"), [("", 1), ("p", -1), ("p", 2**32)])
def test_wrapping_aad_arguments_are_validated(patient_id: str, dek_version: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - two distinct messages
        dek_wrapping_aad(patient_id=patient_id, dek_version=dek_version, kek_id="k")


class _ShortKeyKek(_RotatingKek):
    def unwrap(self, kid: str, wrapped: bytes, aad: bytes) -> bytes:
        return b"\x00" * 16


def test_unwrapped_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(KeyMaterialError, match="wrong length"):
        unwrap_dek(_ShortKeyKek(), patient_id=PATIENT, dek_version=1, kek_id="a", wrapped_dek=b"")


def test_seal_and_open_with_a_prebuilt_cipher_match_the_plain_functions() -> None:
    dek = generate_dek()
    binding: dict[str, Any] = {"table": "t", "column": "c", "row_id": "r", "patient_id": "p"}
    sealed = seal_field(AESGCM(dek), b"value", dek_version=3, **binding)
    assert decrypt_field(sealed, dek=dek, **binding) == b"value"
    versions: list[int] = []

    def cipher_for(version: int) -> AESGCM:
        versions.append(version)
        return AESGCM(dek)

    plain = encrypt_field(b"other", dek=dek, dek_version=3, **binding)
    assert open_field(plain, cipher_for=cipher_for, **binding) == b"other"
    assert versions == [3]  # exactly the version the header names
    with pytest.raises(TamperedCiphertextError):
        open_field(plain, cipher_for=cipher_for, **{**binding, "row_id": "other-row"})


def test_open_fields_opens_what_open_field_opens_asking_once_per_key_version() -> None:
    deks = {1: generate_dek(), 2: generate_dek()}
    rows = [f"row-{i}" for i in range(5)]
    binding = {"table": "t", "column": "c", "patient_id": "p"}
    blobs = [
        encrypt_field(
            row.encode(), dek=deks[1 + i % 2], dek_version=1 + i % 2, row_id=row, **binding
        )
        for i, row in enumerate(rows)
    ]
    versions: list[int] = []

    def cipher_for(version: int) -> AESGCM:
        versions.append(version)
        return AESGCM(deks[version])

    opened = open_fields(blobs, cipher_for=cipher_for, row_ids=rows, **binding)
    assert opened == [row.encode() for row in rows]
    assert sorted(versions) == [1, 2]
    for row, blob in zip(rows, blobs, strict=True):
        assert open_field(blob, cipher_for=cipher_for, row_id=row, **binding) == row.encode()
    with pytest.raises(TamperedCiphertextError):
        open_fields(blobs, cipher_for=cipher_for, row_ids=rows[::-1], **binding)
    with pytest.raises(TamperedCiphertextError):
        open_fields(blobs, cipher_for=cipher_for, row_ids=rows, **{**binding, "patient_id": "q"})
    with pytest.raises(UnsupportedFormatError):
        open_fields([b"\x02" + blobs[0][1:]], cipher_for=cipher_for, row_ids=rows[:1], **binding)
    from_driver: list[bytes] = [memoryview(blobs[0])]  # type: ignore[list-item]
    assert open_fields(from_driver, cipher_for=cipher_for, row_ids=rows[:1], **binding) == [
        b"row-0"
    ]


def test_open_fields_refuses_every_truncation_and_odd_value_after_a_good_field() -> None:
    """The short way of `open_fields` (a cipher cached by the header's first six bytes) never
    opens what `open_field` refuses: each truncation of a field, after a good field under the
    same key version, raises the error `open_field` raises for it; a row id that is not a
    non-empty string is refused; byte-likes other than bytes still open."""
    dek = generate_dek()
    binding = {"table": "t", "column": "c", "patient_id": "p"}
    good = encrypt_field(b"value", dek=dek, dek_version=7, row_id="r", **binding)

    def cipher_for(version: int) -> AESGCM:
        assert version == 7
        return AESGCM(dek)

    for cut in range(len(good)):
        broken = good[:cut]
        with pytest.raises((TamperedCiphertextError, UnsupportedFormatError)) as expected:
            open_field(broken, cipher_for=cipher_for, row_id="r", **binding)
        with pytest.raises(expected.type):
            open_fields([good, broken], cipher_for=cipher_for, row_ids=["r", "r"], **binding)
    with pytest.raises(ValueError, match="row_id"):
        open_fields([good, good], cipher_for=cipher_for, row_ids=["r", ""], **binding)
    with pytest.raises(ValueError, match="row_id"):
        open_fields([good, good], cipher_for=cipher_for, row_ids=["r", None], **binding)  # type: ignore[list-item]
    odd: list[bytes] = [good, bytearray(good), memoryview(good)]  # type: ignore[list-item]
    assert open_fields(odd, cipher_for=cipher_for, row_ids=["r"] * 3, **binding) == [b"value"] * 3
    opened = open_columns(
        [
            ("c", [good]),
            (
                "d",
                [
                    encrypt_field(
                        b"d", dek=dek, dek_version=7, row_id="r", **{**binding, "column": "d"}
                    )
                ],
            ),
        ],
        cipher_for=cipher_for,
        table="t",
        row_ids=["r"],
        patient_id="p",
    )
    assert opened == [[b"value"], [b"d"]]
