"""Envelope encryption: per-patient data keys (DEKs) wrapped by a KEK; field encryption under a DEK.

One DEK per patient (engineering-notes §D.2): erasure destroys that patient's DEKs
(crypto-shredding), and the unwrap cost is paid once per patient per cache lifetime. Field
ciphertexts follow §D.7 (`backend.crypto.format`). Decryption uses exactly the key the ciphertext
names and never tries others: GCM is not key-committing, so trial decryption is unsafe as well as
slow (§D.4).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.crypto.errors import (
    EncryptionError,
    KeyMaterialError,
    TamperedCiphertextError,
    UnknownKeyError,
)
from backend.crypto.format import (
    FORMAT_VERSION,
    HEADER_BYTES,
    MAX_DEK_VERSION,
    NONCE_BYTES,
    SUITE_AES_256_GCM,
    TAG_BYTES,
    FieldHeader,
    build_field_aad,
    length_prefixed,
    parse_field,
    table_and_column,
)
from backend.crypto.kek import KekProvider

__all__ = [
    "DEK_BYTES",
    "MAX_FIELD_PLAINTEXT_BYTES",
    "CipherLookup",
    "DekLookup",
    "WrappedDek",
    "decrypt_field",
    "dek_wrapping_aad",
    "encrypt_field",
    "generate_dek",
    "open_columns",
    "open_field",
    "open_fields",
    "rewrap_dek",
    "seal_field",
    "unwrap_dek",
    "wrap_dek",
]

DEK_BYTES = 32  # AES-256

# pyca/cryptography refuses AEAD inputs above 2**31 - 1 bytes (OverflowError), and the ciphertext we
# must later decrypt is the plaintext plus the tag. NIST's own bound (2**39 - 256 bits, SP 800-38D
# §5.2.1.1) is larger, so this one binds.
MAX_FIELD_PLAINTEXT_BYTES = 2**31 - 1 - TAG_BYTES

_DEK_LABEL = b"pk1"
# A KMS adapter may rotate its active key between our read of `active_kid` and the wrap; we retry a
# few times rather than store a wrap whose AAD names another key.
_WRAP_ATTEMPTS = 3

DekLookup = Callable[[int], bytes | None]
"""Returns the patient's unwrapped DEK for a `dek_version`, or None / raises `UnknownKeyError` /
`LookupError` if that version does not exist (never created, or destroyed)."""


def generate_dek() -> bytes:
    """A fresh random 256-bit data key (from the OS CSPRNG)."""
    return AESGCM.generate_key(bit_length=256)


@dataclass(frozen=True, slots=True)
class WrappedDek:
    """What `patient_keys` stores for one DEK version: the KEK id and the wrapped key."""

    kek_id: str
    dek_version: int
    wrapped_dek: bytes


def dek_wrapping_aad(*, patient_id: str, dek_version: int, kek_id: str) -> bytes:
    """AAD = "pk1" ‖ patient_id ‖ dek_version ‖ kek_id, each length-prefixed (§D.2).

    A wrapped DEK therefore cannot be copied to another patient or version, or relabelled with
    another KEK id.
    """
    if not isinstance(patient_id, str) or not patient_id:
        raise ValueError("patient_id must be a non-empty string")
    _check_dek_version(dek_version)
    return length_prefixed(
        _DEK_LABEL,
        patient_id.encode("utf-8"),
        dek_version.to_bytes(4, "big"),
        kek_id.encode("utf-8"),
    )


def wrap_dek(kek: KekProvider, dek: bytes, *, patient_id: str, dek_version: int) -> WrappedDek:
    """Wrap a patient's DEK under the provider's active KEK.

    The result is unwrapped once before it is returned: a DEK whose wrap cannot be reversed is lost
    data, so a faulty KMS adapter must fail here, before anything is encrypted under that DEK.
    """
    _check_dek(dek)
    for _ in range(_WRAP_ATTEMPTS):
        kid = kek.active_kid
        aad = dek_wrapping_aad(patient_id=patient_id, dek_version=dek_version, kek_id=kid)
        used_kid, wrapped = kek.wrap(dek, aad)
        if used_kid != kid:
            continue
        if kek.unwrap(kid, wrapped, aad) != dek:
            raise KeyMaterialError(f"key-encryption key {kid!r} did not round-trip a data key")
        return WrappedDek(kek_id=kid, dek_version=dek_version, wrapped_dek=wrapped)
    raise KeyMaterialError("the active key-encryption key kept changing while wrapping a data key")


def unwrap_dek(
    kek: KekProvider, *, patient_id: str, dek_version: int, kek_id: str, wrapped_dek: bytes
) -> bytes:
    """Unwrap one `patient_keys` row.

    Raises `UnknownKeyError` if the KEK is not loaded and `TamperedCiphertextError` if the wrapped
    key was altered, belongs to another patient or version, or the KEK is wrong.
    """
    aad = dek_wrapping_aad(patient_id=patient_id, dek_version=dek_version, kek_id=kek_id)
    dek = kek.unwrap(kek_id, wrapped_dek, aad)
    if len(dek) != DEK_BYTES:
        raise KeyMaterialError(f"unwrapped data key version {dek_version} has the wrong length")
    return dek


def rewrap_dek(
    kek: KekProvider, *, patient_id: str, dek_version: int, kek_id: str, wrapped_dek: bytes
) -> WrappedDek:
    """KEK rotation step for one row: unwrap with the named KEK, wrap with the active one (§D.7)."""
    dek = unwrap_dek(
        kek, patient_id=patient_id, dek_version=dek_version, kek_id=kek_id, wrapped_dek=wrapped_dek
    )
    return wrap_dek(kek, dek, patient_id=patient_id, dek_version=dek_version)


def encrypt_field(
    plaintext: bytes,
    *,
    dek: bytes,
    dek_version: int,
    table: str,
    column: str,
    row_id: str,
    patient_id: str,
) -> bytes:
    """Encrypt one column value for one row; the result is `header ‖ ciphertext ‖ tag` (§D.7).

    `row_id` and `patient_id` must be the exact strings used again at decryption (e.g. `str(uuid)`),
    so the row's primary key has to be known before the INSERT (§D.3).
    """
    if not isinstance(plaintext, bytes):
        raise TypeError("plaintext must be bytes")
    _check_dek(dek)
    return seal_field(
        AESGCM(dek),
        plaintext,
        dek_version=dek_version,
        table=table,
        column=column,
        row_id=row_id,
        patient_id=patient_id,
    )


def seal_field(
    cipher: AESGCM,
    plaintext: bytes,
    *,
    dek_version: int,
    table: str,
    column: str,
    row_id: str,
    patient_id: str,
) -> bytes:
    """`encrypt_field` with the DEK's AESGCM object already built (it costs more than a small
    field's encryption, so callers holding one owner's keys keep one per version)."""
    if len(plaintext) > MAX_FIELD_PLAINTEXT_BYTES:
        raise EncryptionError(
            f"value for {table}.{column} is too large for AES-GCM"
            f" (at most {MAX_FIELD_PLAINTEXT_BYTES} bytes)"
        )
    # A fresh random 96-bit nonce per encryption (SP 800-38D §8.2.2). With one key per patient the
    # 2**32-invocations limit of §8.3 would need ~4 billion fields for one patient (§D.4).
    header = FieldHeader(dek_version=dek_version, nonce=os.urandom(NONCE_BYTES))
    header_bytes = header.to_bytes()
    aad = build_field_aad(
        header_bytes, table=table, column=column, row_id=row_id, patient_id=patient_id
    )
    return header_bytes + cipher.encrypt(header.nonce, plaintext, aad)


def decrypt_field(
    blob: bytes,
    *,
    dek: bytes | None = None,
    dek_lookup: DekLookup | None = None,
    table: str,
    column: str,
    row_id: str,
    patient_id: str,
) -> bytes:
    """Decrypt a value written by `encrypt_field` for the same table, column, row and patient.

    Pass the patient's DEK either directly (`dek`) or as `dek_lookup`, which is called once with the
    `dek_version` the header names. Raises `UnsupportedFormatError`, `UnknownKeyError` or
    `TamperedCiphertextError`; never returns unauthenticated bytes.
    """
    if (dek is None) == (dek_lookup is None):
        raise TypeError("pass exactly one of dek or dek_lookup")
    header, sealed = parse_field(blob)
    if dek_lookup is not None:
        dek = _look_up(dek_lookup, header.dek_version, table=table, column=column)
    assert dek is not None
    _check_dek(dek)
    return _open(
        AESGCM(dek),
        header,
        sealed,
        blob,
        table=table,
        column=column,
        row_id=row_id,
        patient_id=patient_id,
    )


CipherLookup = Callable[[int], AESGCM]
"""Returns the AESGCM object of the patient's DEK for a `dek_version`, or raises
`UnknownKeyError` if that version does not exist (never created, or destroyed)."""


def open_field(
    blob: bytes,
    *,
    cipher_for: CipherLookup,
    table: str,
    column: str,
    row_id: str,
    patient_id: str,
) -> bytes:
    """`decrypt_field` with the DEK's AESGCM object looked up by the header's version (the same
    checks and errors; the lookup is called once, with exactly the version the header names)."""
    header, sealed = parse_field(blob)
    return _open(
        cipher_for(header.dek_version),
        header,
        sealed,
        blob,
        table=table,
        column=column,
        row_id=row_id,
        patient_id=patient_id,
    )


_CURRENT_FORMAT = bytes((FORMAT_VERSION, SUITE_AES_256_GCM))


def open_fields(
    blobs: Sequence[bytes],
    *,
    cipher_for: CipherLookup,
    table: str,
    column: str,
    row_ids: Sequence[str],
    patient_id: str,
) -> list[bytes]:
    """`open_field` for many values of one column of one patient (`row_ids[i]` is the row of
    `blobs[i]`): the same checks, associated data and errors, with the parts every field shares
    (table, column, patient) encoded once and each key version's cipher looked up once. An
    export opens millions of fields; per field this leaves only the row id and the AES-GCM call.
    """
    return open_columns(
        [(column, blobs)],
        cipher_for=cipher_for,
        table=table,
        row_ids=row_ids,
        patient_id=patient_id,
    )[0]


def open_columns(
    columns: Sequence[tuple[str, Sequence[bytes]]],
    *,
    cipher_for: CipherLookup,
    table: str,
    row_ids: Sequence[str],
    patient_id: str,
) -> list[list[bytes]]:
    """`open_fields` for several columns of the same rows of one patient (`columns[c]` is
    (column name, its values), the i-th value in the row `row_ids[i]`), returned column by
    column. Each row's part of the associated data (its id, then the patient) is encoded once
    for all its columns; every field is still authenticated against its full AAD (§D.7)."""
    patient = patient_id.encode("utf-8")
    if not patient:
        raise ValueError("patient_id must be a non-empty string")
    suffix = len(patient).to_bytes(4, "big") + patient
    # len ‖ row id ‖ len ‖ patient id: the AAD after the header, table and column. None for a
    # row id the short way does not take (`open_field` raises the specific error).
    tails: list[bytes | None] = []
    for row_id in row_ids:
        if type(row_id) is str and row_id:
            row = row_id.encode("utf-8")
            tails.append(len(row).to_bytes(4, "big") + row + suffix)
        else:
            tails.append(None)
    # By the header's first six bytes (format, suite, key version): one dictionary lookup per
    # field finds its cipher and shows the field is of the current format.
    ciphers: dict[bytes, AESGCM] = {}
    opened_columns: list[list[bytes]] = []
    for column, blobs in columns:
        if len(blobs) != len(tails):
            raise ValueError("one row id per ciphertext")
        prefix = table_and_column(table, column)
        rests = [None if tail is None else prefix + tail for tail in tails]
        opened: list[bytes] = []
        append = opened.append
        for blob, rest, row_id in zip(blobs, rests, row_ids, strict=True):
            # The short way takes a well-formed field of the current format; anything else
            # fails it (a header not seen yet, a blob that is not bytes or too short for its
            # nonce and tag, a row id without a tail: None) and goes through `open_field`,
            # which raises the specific error; so does a failed tag.
            cipher: AESGCM | None
            try:
                cipher = ciphers[blob[:6]]
            except KeyError:
                cipher = None
                if type(blob) is bytes and len(blob) >= 6 and blob[:2] == _CURRENT_FORMAT:
                    # The first field under this key version: look its cipher up once.
                    cipher = ciphers[blob[:6]] = cipher_for(int.from_bytes(blob[2:6], "big"))
            except TypeError:  # not bytes (None, an unhashable slice)
                cipher = None
            if cipher is not None:
                try:
                    append(
                        cipher.decrypt(
                            blob[6:HEADER_BYTES],
                            blob[HEADER_BYTES:],
                            blob[:HEADER_BYTES] + rest,  # type: ignore[operator]
                        )
                    )
                    continue
                except (InvalidTag, TypeError, ValueError):
                    pass
            append(
                open_field(
                    blob,
                    cipher_for=cipher_for,
                    table=table,
                    column=column,
                    row_id=row_id,
                    patient_id=patient_id,
                )
            )
        opened_columns.append(opened)
    return opened_columns


def _open(
    cipher: AESGCM,
    header: FieldHeader,
    sealed: bytes,
    blob: bytes,
    *,
    table: str,
    column: str,
    row_id: str,
    patient_id: str,
) -> bytes:
    aad = build_field_aad(
        bytes(blob[:HEADER_BYTES]), table=table, column=column, row_id=row_id, patient_id=patient_id
    )
    try:
        return cipher.decrypt(header.nonce, sealed, aad)
    except InvalidTag:
        raise TamperedCiphertextError(
            f"{table}.{column} value for row {row_id!r} (data key version {header.dek_version})"
            " failed authentication: wrong key, altered or truncated, or moved from another row,"
            " column or patient"
        ) from None


def _look_up(lookup: DekLookup, dek_version: int, *, table: str, column: str) -> bytes:
    missing = f"{table}.{column}: data key version {dek_version} is not available for this patient"
    try:
        dek = lookup(dek_version)
    except UnknownKeyError:
        raise
    except LookupError:
        raise UnknownKeyError(missing) from None
    if dek is None:
        raise UnknownKeyError(missing)
    return dek


def _check_dek(dek: bytes) -> None:
    if not isinstance(dek, bytes) or len(dek) != DEK_BYTES:
        raise KeyMaterialError(f"a data key must be exactly {DEK_BYTES} bytes")


def _check_dek_version(dek_version: int) -> None:
    if not isinstance(dek_version, int) or not 0 <= dek_version <= MAX_DEK_VERSION:
        raise ValueError("dek_version must fit in an unsigned 32-bit integer")
