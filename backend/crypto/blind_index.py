"""Blind indexes: HMAC-SHA256 of a normalised value, so encrypted identifiers can be looked up.

Design from engineering-notes §D.6 (after Paragon CipherSweet and AWS Database Encryption SDK
"beacons"):

- One key per purpose (table, column, version), derived with HKDF-SHA256 (RFC 5869) from a root key
  with `info = "bi|<table>|<column>|v<n>"`. Indexes of one value in two columns are unrelated, and a
  new version re-keys one column without touching the others.
- The root key is *not* the KEK and is not derived from it: rotating the KEK must not change every
  index, and the index key must not be recoverable from KEK material (or vice versa).
- Unique lookups (login email, phone, MRN) keep the full 32 bytes under a unique constraint.
  Truncation is for non-unique search: false positives hide the value distribution.
- Never blind-index clinical values (scores, symptom flags): a low-cardinality index is a lookup
  table for the plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backend.crypto.errors import KeyMaterialError

__all__ = [
    "BLIND_INDEX_ROOT_BYTES",
    "FULL_INDEX_BYTES",
    "BlindIndexPurpose",
    "BlindIndexer",
    "Normaliser",
    "derive_blind_index_root",
    "generate_blind_index_root",
    "normalise_email",
    "normalise_exact",
    "normalise_identifier",
    "normalise_phone",
    "normalise_text",
    "parse_blind_index_root",
]

BLIND_INDEX_ROOT_BYTES = 32
FULL_INDEX_BYTES = 32  # HMAC-SHA256 output
_MIN_ROOT_SECRET_BYTES = 32
_ROOT_INFO = b"interlude|blind-index-root|v1"
# Table and column names end up inside the "|"-separated HKDF info, so they may not contain "|".
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

Normaliser = Callable[[str], str]


# --- normalisation: equal in the clinic's eyes → equal bytes ---


def normalise_exact(value: str) -> str:
    """Unicode NFC only: the same text typed on two devices compares equal, nothing else changes."""
    return unicodedata.normalize("NFC", value)


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased.

    RFC 5321 lets the local part be case-sensitive, but no provider we meet treats it so, and
    patients type their address in whatever case the phone offers.
    """
    return unicodedata.normalize("NFC", value).strip().lower()


def normalise_phone(value: str) -> str:
    """Digits only: "+44 (0)20 7946-0958" and "4402079460958" compare equal.

    The caller should store numbers in one convention (E.164 without "+" is ideal); digits-only
    cannot tell a national number from the same digits with a country code.
    """
    return "".join(ch for ch in unicodedata.normalize("NFKC", value) if "0" <= ch <= "9")


def normalise_identifier(value: str) -> str:
    """Record numbers (MRN): compatibility-normalised, upper-cased, without spaces, hyphens, slashes
    or dots, which clinics print inconsistently ("ab-123 456" → "AB123456")."""
    folded = unicodedata.normalize("NFKC", value).upper()
    return "".join(ch for ch in folded if not (ch.isspace() or ch in "-/."))


def normalise_text(value: str) -> str:
    """Free-form text such as names: NFKC, case-folded, inner whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


# --- keys ---


def derive_blind_index_root(secret: bytes) -> bytes:
    """The 32-byte root key from dedicated secret material (at least 32 random bytes).

    Use material of its own, never the KEK (module docstring).
    """
    if not isinstance(secret, bytes) or len(secret) < _MIN_ROOT_SECRET_BYTES:
        raise KeyMaterialError(
            f"blind-index secret must be at least {_MIN_ROOT_SECRET_BYTES} random bytes"
        )
    return HKDF(
        algorithm=hashes.SHA256(), length=BLIND_INDEX_ROOT_BYTES, salt=None, info=_ROOT_INFO
    ).derive(secret)


def parse_blind_index_root(value: str) -> bytes:
    """A base64 root key from configuration; errors never echo the value."""
    try:
        root = base64.b64decode(value.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError, AttributeError):
        raise KeyMaterialError("blind-index root key is not valid base64") from None
    if len(root) != BLIND_INDEX_ROOT_BYTES:
        raise KeyMaterialError(
            f"blind-index root key must decode to exactly {BLIND_INDEX_ROOT_BYTES} bytes"
        )
    return root


def generate_blind_index_root() -> str:
    """A fresh base64 root key for an operator to store as a secret (`parse_blind_index_root`)."""
    return base64.b64encode(secrets.token_bytes(BLIND_INDEX_ROOT_BYTES)).decode("ascii")


@dataclass(frozen=True, slots=True)
class BlindIndexPurpose:
    """Which column an index is for, how values are normalised and how long the index is.

    `truncate_to` is the index length in bytes; None keeps all 32 (required for unique lookups).
    Store `version` beside the index (`bi_version`): re-indexing under a new version needs the
    plaintext, so it runs with decryption in the background.
    """

    table: str
    column: str
    version: int = 1
    normalise: Normaliser = field(default=normalise_exact)
    truncate_to: int | None = None

    def __post_init__(self) -> None:
        if _NAME.fullmatch(self.table) is None or _NAME.fullmatch(self.column) is None:
            raise ValueError("table and column must be lower-case SQL identifiers")
        if not isinstance(self.version, int) or self.version < 1:
            raise ValueError("blind-index version must be a positive integer")
        if self.truncate_to is not None and not 1 <= self.truncate_to <= FULL_INDEX_BYTES:
            raise ValueError(f"truncate_to must be between 1 and {FULL_INDEX_BYTES} bytes")

    @property
    def info(self) -> bytes:
        """The HKDF info string naming this purpose (§D.2)."""
        return f"bi|{self.table}|{self.column}|v{self.version}".encode("ascii")

    @property
    def length(self) -> int:
        return FULL_INDEX_BYTES if self.truncate_to is None else self.truncate_to


class BlindIndexer:
    """Computes blind indexes under one root key; per-purpose keys are derived once and kept."""

    __slots__ = ("_keys", "_lock", "_root")

    def __init__(self, root_key: bytes) -> None:
        if not isinstance(root_key, bytes) or len(root_key) != BLIND_INDEX_ROOT_BYTES:
            raise KeyMaterialError(
                f"blind-index root key must be exactly {BLIND_INDEX_ROOT_BYTES} bytes"
            )
        self._root = root_key
        self._keys: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "BlindIndexer(<root key hidden>)"

    def _key(self, purpose: BlindIndexPurpose) -> bytes:
        info = purpose.info
        key = self._keys.get(info)
        if key is None:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
                self._root
            )
            with self._lock:
                self._keys.setdefault(info, key)
        return key

    def compute(self, purpose: BlindIndexPurpose, value: str) -> bytes:
        """HMAC-SHA256(k_purpose, normalise(value)), truncated if the purpose says so.

        A value that normalises to nothing (e.g. a phone number without digits) is refused: indexing
        it would make every blank collide on one well-known index.
        """
        if not isinstance(value, str):
            raise TypeError("blind-index values are text")
        normalised = purpose.normalise(value)
        if not normalised:
            raise ValueError(
                f"{purpose.table}.{purpose.column}: value is empty after normalisation"
            )
        digest = hmac.digest(self._key(purpose), normalised.encode("utf-8"), hashlib.sha256)
        return digest[: purpose.length]
