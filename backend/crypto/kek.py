"""Key-encryption-key (KEK) providers.

The KEK wraps each patient's data key and never enters the database (DESIGN.md §5, engineering-notes
§D.2). `KekProvider` is the whole interface a KMS or Vault transit adapter has to implement;
`LocalKekProvider` is the in-process implementation used with a development key file or with
production key material from configuration.

A provider holds several keys so that KEK rotation needs no downtime: the *active* key wraps, every
key it still holds can unwrap, and an old key is removed only after every data key has been
re-wrapped (§D.7 "Rotation").
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Protocol, runtime_checkable

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.crypto.errors import (
    KeyMaterialError,
    TamperedCiphertextError,
    UnknownKeyError,
    UnsupportedFormatError,
)
from backend.crypto.format import length_prefixed

__all__ = [
    "KEK_BYTES",
    "KEY_FILE_VERSION",
    "KekProvider",
    "KeyMaterialError",
    "LocalKekProvider",
    "add_key_to_file",
    "generate_key_material",
    "load_key_file",
    "new_kid",
    "parse_key_material",
]

KEK_BYTES = 32
"""AES-256: the only KEK size we accept."""

KEY_FILE_VERSION = 1

# Key ids travel in configuration strings ("kid:key,kid:key"), in the wrapping AAD and in the
# patient_keys table, so they are restricted to characters that need no escaping anywhere.
_KID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Layout of a blob produced by LocalKekProvider.wrap: 1-byte version, 12-byte nonce, ciphertext ‖
# 16-byte tag.
_WRAP_VERSION = 0x01
_NONCE_BYTES = 12  # 96-bit IV, as NIST SP 800-38D §5.2.1.1 recommends
_TAG_BYTES = 16
_WRAP_LABEL = b"interlude-kek-wrap-v1"


@runtime_checkable
class KekProvider(Protocol):
    """Wraps and unwraps data keys under a key-encryption key identified by a key id (kid).

    `aad` is authenticated, not encrypted: callers bind the wrapped key to its owner and version
    with it (`backend.crypto.envelope`). Implementations must fail with `UnknownKeyError` for a kid
    they do not hold and with `TamperedCiphertextError` when authentication fails, and must never
    try other keys.
    """

    @property
    def active_kid(self) -> str:
        """The kid that `wrap` uses now."""
        ...

    def kids(self) -> frozenset[str]:
        """Every kid that `unwrap` accepts."""
        ...

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        """Encrypt `dek` under the active KEK; returns the kid used and the wrapped blob."""
        ...

    def unwrap(self, kid: str, wrapped: bytes, aad: bytes) -> bytes:
        """Decrypt a blob produced by `wrap` with the KEK named `kid`."""
        ...


def _check_kid(kid: str) -> None:
    if not isinstance(kid, str) or _KID_PATTERN.fullmatch(kid) is None:
        # The kid is not echoed: a misplaced key could be sitting in that position.
        raise KeyMaterialError("key id must be 1-64 characters from A-Z a-z 0-9 . _ -")


class LocalKekProvider:
    """AES-256-GCM key wrapping with KEKs held in process memory.

    Immutable: rotation produces a new provider (reload the key file or the configuration), so the
    active kid cannot change between reading `active_kid` and calling `wrap`.
    """

    __slots__ = ("_active_kid", "_ciphers")

    def __init__(self, keys: Mapping[str, bytes], *, active_kid: str) -> None:
        if not keys:
            raise KeyMaterialError("at least one key-encryption key is required")
        ciphers: dict[str, AESGCM] = {}
        for kid, key in keys.items():
            _check_kid(kid)
            if not isinstance(key, bytes) or len(key) != KEK_BYTES:
                raise KeyMaterialError(
                    f"key-encryption key {kid!r} must be exactly {KEK_BYTES} bytes"
                )
            ciphers[kid] = AESGCM(key)
        if active_kid not in ciphers:
            raise KeyMaterialError("the active key id is not among the keys provided")
        self._ciphers = ciphers
        self._active_kid = active_kid

    @classmethod
    def generate(cls, kid: str | None = None) -> LocalKekProvider:
        """A provider with one fresh random key (tests, first start)."""
        kid = kid if kid is not None else new_kid()
        return cls({kid: AESGCM.generate_key(bit_length=256)}, active_kid=kid)

    def __repr__(self) -> str:
        return f"LocalKekProvider(active_kid={self._active_kid!r}, kids={sorted(self._ciphers)!r})"

    @property
    def active_kid(self) -> str:
        return self._active_kid

    def kids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def _aad(self, kid: str, aad: bytes) -> bytes:
        # The kid is bound here as well as by callers, so a blob cannot be unwrapped under a
        # different kid whatever AAD a caller chooses.
        return length_prefixed(_WRAP_LABEL, kid.encode("ascii"), aad)

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        kid = self._active_kid
        # Random 96-bit nonces are safe up to 2**32 wraps per KEK (SP 800-38D §8.3); one wrap per
        # data-key version keeps us many orders of magnitude below that (engineering-notes §D.4).
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, dek, self._aad(kid, aad))
        return kid, bytes([_WRAP_VERSION]) + nonce + sealed

    def unwrap(self, kid: str, wrapped: bytes, aad: bytes) -> bytes:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKeyError(f"key-encryption key {kid!r} is not loaded")
        if len(wrapped) < 1 or wrapped[0] != _WRAP_VERSION:
            raise UnsupportedFormatError("wrapped data key has an unknown format version")
        if len(wrapped) < 1 + _NONCE_BYTES + _TAG_BYTES:
            raise TamperedCiphertextError("wrapped data key is truncated")
        nonce = wrapped[1 : 1 + _NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, wrapped[1 + _NONCE_BYTES :], self._aad(kid, aad))
        except InvalidTag:
            raise TamperedCiphertextError(
                f"wrapped data key failed authentication under key-encryption key {kid!r}"
                " (wrong key, altered, or bound to another patient or version)"
            ) from None


def new_kid(now: datetime | None = None) -> str:
    """A fresh key id: creation time (sortable, useful to operators) plus randomness (unique)."""
    moment = now if now is not None else datetime.now(UTC)
    return f"kek-{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


# --- production key material from configuration ---


def parse_key_material(value: str) -> LocalKekProvider:
    """Parse `kid:base64key[,kid:base64key...]`; the first entry is the active (wrapping) key.

    Errors name the entry by position only, never by content: the content is the secret.
    """
    if not isinstance(value, str) or not value.strip():
        raise KeyMaterialError("key material is empty; expected kid:base64key[,kid:base64key...]")
    keys: dict[str, bytes] = {}
    active: str | None = None
    for position, entry in enumerate(value.split(","), start=1):
        kid, sep, encoded = entry.strip().partition(":")
        if not sep:
            raise KeyMaterialError(
                f"key material entry {position} is not of the form kid:base64key"
            )
        kid = kid.strip()
        try:
            _check_kid(kid)
        except KeyMaterialError:
            raise KeyMaterialError(f"key material entry {position} has an invalid key id") from None
        if kid in keys:
            raise KeyMaterialError(f"key material entry {position} repeats key id {kid!r}")
        key = _decode_key(encoded.strip(), where=f"key material entry {position}")
        keys[kid] = key
        active = active if active is not None else kid
    assert active is not None  # value.split(",") always yields at least one entry
    return LocalKekProvider(keys, active_kid=active)


def generate_key_material(kid: str | None = None) -> str:
    """A fresh single-key value in the `parse_key_material` format, for an operator to store as a
    secret."""
    kid = kid if kid is not None else new_kid()
    _check_kid(kid)
    return f"{kid}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode('ascii')}"


def _decode_key(encoded: str, *, where: str) -> bytes:
    try:
        key = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise KeyMaterialError(f"{where}: key is not valid base64") from None
    if len(key) != KEK_BYTES:
        raise KeyMaterialError(f"{where}: key must decode to exactly {KEK_BYTES} bytes")
    return key


# --- development key file ---


class _KeyEntry(msgspec.Struct, forbid_unknown_fields=True):
    kid: str
    key: str
    created_at: Annotated[datetime, msgspec.Meta(tz=True)]


class _KeyFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    active_kid: str
    keys: list[_KeyEntry]


@dataclass(frozen=True, slots=True)
class _LoadedFile:
    document: _KeyFile
    provider: LocalKekProvider


def load_key_file(path: Path, *, create: bool) -> tuple[LocalKekProvider, bool]:
    """Load the JSON key file at `path`, generating it first if it is missing and `create` is true.

    Returns the provider and whether the file was created now. A created file holds one fresh key,
    has mode 0600 and appears atomically, so two processes starting together end up with the same
    key.
    """
    path = Path(path)
    if create and not path.exists():
        kid = new_kid()
        document = _KeyFile(
            version=KEY_FILE_VERSION,
            active_kid=kid,
            keys=[_new_entry(kid)],
        )
        if _publish_or_explain(path, _encode(document), replace=False):
            return _load(path).provider, True
    return _load(path).provider, False


def add_key_to_file(path: Path) -> str:
    """Add a fresh key to the key file and make it active; older keys stay so they can still unwrap.

    Returns the new active kid. Run `rotate-kek` afterwards to re-wrap data keys, then retire the
    old keys.
    """
    path = Path(path)
    with _file_lock(path):
        current = _load(path).document
        kid = new_kid()
        while any(entry.kid == kid for entry in current.keys):  # 32 random bits; be certain anyway
            kid = new_kid()  # pragma: no cover
        updated = _KeyFile(
            version=KEY_FILE_VERSION,
            active_kid=kid,
            keys=[*current.keys, _new_entry(kid)],
        )
        _publish_or_explain(path, _encode(updated), replace=True)
    return kid


def _new_entry(kid: str) -> _KeyEntry:
    key = AESGCM.generate_key(bit_length=256)
    return _KeyEntry(
        kid=kid,
        key=base64.b64encode(key).decode("ascii"),
        created_at=datetime.now(UTC).replace(microsecond=0),
    )


def _encode(document: _KeyFile) -> bytes:
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"


def _load(path: Path) -> _LoadedFile:
    where = f"key file {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyMaterialError(f"{where} does not exist") from None
    except OSError as exc:
        raise KeyMaterialError(f"{where} cannot be opened ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise KeyMaterialError(f"{where} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        # Same rule as OpenSSH for private keys: any access beyond the owner is refused.
        if os.name == "posix" and info.st_mode & 0o077:
            raise KeyMaterialError(
                f"{where} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o});"
                " chmod 600 it"
            )
        try:
            raw = handle.read()
        except OSError as exc:
            raise KeyMaterialError(f"{where} cannot be read ({exc.strerror})") from None
    try:
        document = msgspec.json.decode(raw, type=_KeyFile)
    except msgspec.DecodeError:
        # msgspec's own message names the field path but we keep ours fixed: a decoding error must
        # not become a way to echo file content into logs.
        raise KeyMaterialError(f"{where} is not a valid key file") from None
    if document.version != KEY_FILE_VERSION:
        raise KeyMaterialError(f"{where} has unsupported format version {document.version}")
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(document.keys, start=1):
        try:
            _check_kid(entry.kid)
        except KeyMaterialError:
            raise KeyMaterialError(f"{where}: key {position} has an invalid key id") from None
        if entry.kid in keys:
            raise KeyMaterialError(f"{where}: key id {entry.kid!r} appears twice")
        keys[entry.kid] = _decode_key(entry.key, where=f"{where}, key {entry.kid!r}")
    if not keys:
        raise KeyMaterialError(f"{where} holds no keys")
    if document.active_kid not in keys:
        raise KeyMaterialError(f"{where}: the active key id is not among its keys")
    return _LoadedFile(document, LocalKekProvider(keys, active_kid=document.active_kid))


def _publish_or_explain(path: Path, content: bytes, *, replace: bool) -> bool:
    try:
        return _publish(path, content, replace=replace)
    except OSError as exc:
        raise KeyMaterialError(
            f"key file {str(path)!r} cannot be written ({exc.strerror})"
        ) from None


def _publish(path: Path, content: bytes, *, replace: bool) -> bool:
    """Write `content` to `path` atomically with mode 0600; returns False if `replace` is false and
    it exists.

    The content goes to a temporary file in the same directory first (same file system, so the final
    step is atomic). Creating uses link(), which refuses to overwrite: two first starts racing must
    not each keep a different key, since data keys wrapped with the loser's key would be lost.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            if os.name == "posix":
                os.fchmod(handle.fileno(), 0o600)  # the umask can only narrow, but be explicit
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
        _fsync_directory(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the key file so two rotations cannot drop each other's key."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX; rotation is an operator action, run it once
        yield
        return
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyMaterialError(
            f"key file {str(path)!r} cannot be locked ({exc.strerror})"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
