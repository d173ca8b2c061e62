"""Envelope encryption core: KEK providers, per-patient data keys, field ciphertexts, blind indexes.

Pure: no database and no HTTP. Design: DESIGN.md §5, engineering-notes §D (field format §D.7).
"""

from backend.crypto.blind_index import (
    BlindIndexer,
    BlindIndexPurpose,
    derive_blind_index_root,
    generate_blind_index_root,
    normalise_email,
    normalise_exact,
    normalise_identifier,
    normalise_phone,
    normalise_text,
    parse_blind_index_root,
)
from backend.crypto.dek_cache import DekCache
from backend.crypto.envelope import (
    DEK_BYTES,
    CipherLookup,
    DekLookup,
    WrappedDek,
    decrypt_field,
    dek_wrapping_aad,
    encrypt_field,
    generate_dek,
    open_field,
    rewrap_dek,
    seal_field,
    unwrap_dek,
    wrap_dek,
)
from backend.crypto.errors import (
    CryptoError,
    DecryptionError,
    EncryptionError,
    KeyMaterialError,
    TamperedCiphertextError,
    UnknownKeyError,
    UnsupportedFormatError,
)
from backend.crypto.format import FieldHeader, build_field_aad, parse_field
from backend.crypto.kek import (
    KekProvider,
    LocalKekProvider,
    add_key_to_file,
    generate_key_material,
    load_key_file,
    parse_key_material,
)

__all__ = [
    "DEK_BYTES",
    "BlindIndexPurpose",
    "BlindIndexer",
    "CipherLookup",
    "CryptoError",
    "DecryptionError",
    "DekCache",
    "DekLookup",
    "EncryptionError",
    "FieldHeader",
    "KekProvider",
    "KeyMaterialError",
    "LocalKekProvider",
    "TamperedCiphertextError",
    "UnknownKeyError",
    "UnsupportedFormatError",
    "WrappedDek",
    "add_key_to_file",
    "build_field_aad",
    "decrypt_field",
    "dek_wrapping_aad",
    "derive_blind_index_root",
    "encrypt_field",
    "generate_blind_index_root",
    "generate_dek",
    "generate_key_material",
    "load_key_file",
    "normalise_email",
    "normalise_exact",
    "normalise_identifier",
    "normalise_phone",
    "normalise_text",
    "open_field",
    "parse_blind_index_root",
    "parse_field",
    "parse_key_material",
    "rewrap_dek",
    "seal_field",
    "unwrap_dek",
    "wrap_dek",
]
