"""One exception hierarchy for the encryption core.

Messages name *what* failed (table, column, key id, key version) and never carry plaintext, key
bytes or ciphertext: they end up in logs and alerts (DESIGN.md §5: a wrong key or tamper is a loud
error).

    CryptoError
    ├── KeyMaterialError          unusable key material or key file (KEK, DEK, blind-index root)
    ├── EncryptionError           a value cannot be encrypted (too large for AES-GCM)
    └── DecryptionError
        ├── UnsupportedFormatError     unknown format version or suite
        ├── TamperedCiphertextError    authentication failed: wrong key, altered, truncated, moved
        └── UnknownKeyError            the named KEK id or DEK version is not available
"""


class CryptoError(Exception):
    """Base of every error raised by `backend.crypto`."""


class KeyMaterialError(CryptoError):
    """Key material is missing, malformed, of the wrong length or insufficiently protected."""


class EncryptionError(CryptoError):
    """A value cannot be encrypted under the field format (for example it exceeds AES-GCM's
    limits)."""


class DecryptionError(CryptoError):
    """A ciphertext could not be decrypted; never answered with guessed or partial plaintext."""


class UnsupportedFormatError(DecryptionError):
    """The ciphertext names a format version or algorithm suite this code does not implement."""


class TamperedCiphertextError(DecryptionError):
    """Authentication failed.

    AES-GCM cannot tell these apart, so neither can we: the key is wrong, the bytes were altered or
    truncated, or the ciphertext was moved to another row, column or patient (the associated data no
    longer matches).
    """


class UnknownKeyError(DecryptionError):
    """The key id (KEK) or key version (DEK) named by the ciphertext is not available, e.g.
    destroyed."""
