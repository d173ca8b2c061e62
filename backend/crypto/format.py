"""The field ciphertext format (engineering-notes §D.7), stored as BLOB/bytea.

    offset  length  field
    0       1       format version      0x01
    1       1       suite id            0x01 = AES-256-GCM, 96-bit random nonce, 128-bit tag
                                        (0x02 reserved for AES-256-GCM-SIV)
    2       4       dek_version         uint32, big-endian; the patient comes from the row
    6       12      nonce
    18      n+16    ciphertext ‖ tag

The header is authenticated: it is the first element of the associated data, followed by the table,
column, row id and patient id, each with a 4-byte big-endian length prefix (§D.3, the serialisation
Tink recommends for structured data), so no two different bindings produce the same AAD.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from backend.crypto.errors import TamperedCiphertextError, UnsupportedFormatError

__all__ = [
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAX_DEK_VERSION",
    "NONCE_BYTES",
    "OVERHEAD_BYTES",
    "SUITE_AES_256_GCM",
    "SUITE_AES_256_GCM_SIV",
    "TAG_BYTES",
    "FieldHeader",
    "build_field_aad",
    "length_prefixed",
    "parse_field",
    "table_and_column",
]

FORMAT_VERSION = 0x01
SUITE_AES_256_GCM = 0x01
SUITE_AES_256_GCM_SIV = 0x02  # reserved (§D.4: for a future high-volume single-key path)
NONCE_BYTES = 12  # 96-bit IV: NIST SP 800-38D §5.2.1.1 recommends restricting IVs to 96 bits
TAG_BYTES = 16  # full 128-bit tag (SP 800-38D §5.2.1.2)
HEADER_BYTES = 18
OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES
MAX_DEK_VERSION = 0xFFFF_FFFF

_SUPPORTED_SUITES = frozenset({SUITE_AES_256_GCM})
_HEADER = struct.Struct(">BBI12s")
assert _HEADER.size == HEADER_BYTES


@dataclass(frozen=True, slots=True)
class FieldHeader:
    """The authenticated 18-byte prefix of a field ciphertext."""

    dek_version: int
    nonce: bytes
    version: int = FORMAT_VERSION
    suite: int = SUITE_AES_256_GCM

    def __post_init__(self) -> None:
        if not 0 <= self.dek_version <= MAX_DEK_VERSION:
            raise ValueError("dek_version must fit in an unsigned 32-bit integer")
        if len(self.nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
        if not (0 <= self.version <= 0xFF and 0 <= self.suite <= 0xFF):
            raise ValueError("version and suite are single bytes")

    def to_bytes(self) -> bytes:
        return _HEADER.pack(self.version, self.suite, self.dek_version, self.nonce)


def parse_field(blob: bytes) -> tuple[FieldHeader, bytes]:
    """Split a field ciphertext into its header and `ciphertext ‖ tag`, refusing the unreadable.

    Raises `UnsupportedFormatError` for an empty blob or an unknown version or suite, and
    `TamperedCiphertextError` for a known format too short to hold a header and a tag (it can only
    have been truncated).
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise UnsupportedFormatError("field ciphertext must be bytes")
    blob = bytes(blob)
    if not blob:
        raise UnsupportedFormatError("field ciphertext is empty")
    if blob[0] != FORMAT_VERSION:
        raise UnsupportedFormatError(f"unknown field ciphertext format version 0x{blob[0]:02x}")
    if len(blob) < 2 or blob[1] not in _SUPPORTED_SUITES:
        suite = f"0x{blob[1]:02x}" if len(blob) >= 2 else "(missing)"
        raise UnsupportedFormatError(f"unsupported field ciphertext suite {suite}")
    if len(blob) < OVERHEAD_BYTES:
        raise TamperedCiphertextError(
            f"field ciphertext is truncated ({len(blob)} bytes, at least {OVERHEAD_BYTES} needed)"
        )
    version, suite, dek_version, nonce = _HEADER.unpack_from(blob)
    header = FieldHeader(dek_version=dek_version, nonce=nonce, version=version, suite=suite)
    return header, blob[HEADER_BYTES:]


def length_prefixed(*parts: bytes) -> bytes:
    """`len(p1) ‖ p1 ‖ len(p2) ‖ p2 …` with 4-byte big-endian lengths: an injective encoding."""
    out = bytearray()
    for part in parts:
        out += len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


def build_field_aad(
    header: bytes, *, table: str, column: str, row_id: str, patient_id: str
) -> bytes:
    """AAD = header ‖ len‖table ‖ len‖column ‖ len‖row id ‖ len‖patient id (§D.7).

    Binding all four stops a ciphertext being copied to another row, column or patient (§D.3).
    """
    if len(header) != HEADER_BYTES:
        raise ValueError(f"header must be {HEADER_BYTES} bytes")
    for name, value in (("row_id", row_id), ("patient_id", patient_id)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    row = row_id.encode("utf-8")
    patient = patient_id.encode("utf-8")
    # Same bytes as length_prefixed(table, column, row, patient), built without a loop: this runs
    # for every encrypted field read or written, on the submission and export hot paths.
    return b"".join(
        (
            header,
            table_and_column(table, column),
            len(row).to_bytes(4, "big"),
            row,
            len(patient).to_bytes(4, "big"),
            patient,
        )
    )


@functools.lru_cache(maxsize=512)
def table_and_column(table: str, column: str) -> bytes:
    """The constant part of a field's AAD (after the header); a handful of (table, column)
    pairs exist."""
    for name, value in (("table", table), ("column", column)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    return length_prefixed(table.encode("utf-8"), column.encode("utf-8"))
