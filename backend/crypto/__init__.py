"""Envelope encryption core: KEK providers, per-patient data keys, field ciphertexts, blind indexes.

Pure: no database and no HTTP. Design: DESIGN.md §5, engineering-notes §D (field format §D.7).
"""

from backend.crypto.errors import (
    CryptoError,
    DecryptionError,
    EncryptionError,
    KeyMaterialError,
    TamperedCiphertextError,
    UnknownKeyError,
    UnsupportedFormatError,
)
from backend.crypto.kek import (
    KekProvider,
    LocalKekProvider,
    add_key_to_file,
    generate_key_material,
    load_key_file,
    parse_key_material,
)

__all__ = [
    "CryptoError",
    "DecryptionError",
    "EncryptionError",
    "KekProvider",
    "KeyMaterialError",
    "LocalKekProvider",
    "TamperedCiphertextError",
    "UnknownKeyError",
    "UnsupportedFormatError",
    "add_key_to_file",
    "generate_key_material",
    "load_key_file",
    "parse_key_material",
]
