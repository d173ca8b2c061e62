"""Service secrets besides the KEK: the blind-index root and the access-token signing key.

Production reads them from ``INTERLUDE_BLIND_INDEX_KEY`` and ``INTERLUDE_TOKEN_SIGNING_KEY``
(base64 or base64url, at least 32 random bytes each). Development generates
``<data_dir>/dev-secrets.json`` on first start, the same way the development KEK file is made
(``backend/system/keys.py``): mode 0600, published atomically so two processes starting together
agree, and announced with a loud warning.

The blind-index root is deliberately not derived from the KEK (engineering-notes §D.2, §D.6): a KEK
rotation must not change every index, and neither secret may be recoverable from the other.
"""

import base64
import binascii
import contextlib
import logging
import os
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import msgspec

from backend.config import PREFIX, ConfigError, Settings
from backend.crypto import KeyMaterialError, derive_blind_index_root

__all__ = [
    "DEV_SECRETS_FILE",
    "MIN_SECRET_BYTES",
    "ServiceSecrets",
    "generate_secret",
    "load_service_secrets",
]

logger = logging.getLogger("interlude.keys")

MIN_SECRET_BYTES: Final = 32
DEV_SECRETS_FILE: Final = "dev-secrets.json"
_DEV_FILE_VERSION: Final = 1

DEV_SECRETS_WARNING: Final = (
    "DEVELOPMENT SECRETS IN USE: blind indexes and access tokens use secrets generated on this "
    "machine at {path}. They are for development only; production must set "
    "INTERLUDE_BLIND_INDEX_KEY and INTERLUDE_TOKEN_SIGNING_KEY."
)


class ServiceSecrets(msgspec.Struct, frozen=True):
    """Secret keys the service holds in memory. ``repr`` never shows them."""

    blind_index_root: bytes
    """HKDF root for blind indexes (``backend.crypto.BlindIndexer``), separate from the KEK."""
    token_signing_key: bytes
    """At least 32 bytes: the HMAC key for access tokens (JWT HS256, RFC 7518 §3.2)."""

    def __repr__(self) -> str:
        return "ServiceSecrets(<hidden>)"


class _DevSecretsFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    blind_index_key: str
    token_signing_key: str
    created_at: Annotated[datetime, msgspec.Meta(tz=True)]


def generate_secret() -> str:
    """A fresh 32-byte secret, base64, for an operator to store (one per setting)."""
    return base64.b64encode(secrets.token_bytes(MIN_SECRET_BYTES)).decode("ascii")


_announced = False


def load_service_secrets(settings: Settings) -> ServiceSecrets:
    """The service secrets; raises ``ConfigError`` naming the setting when one is missing or bad."""
    blind_index_env = settings.blind_index_key
    signing_env = settings.token_signing_key
    if settings.is_production:
        for name, value in (
            ("BLIND_INDEX_KEY", blind_index_env),
            ("TOKEN_SIGNING_KEY", signing_env),
        ):
            if value is None:
                raise ConfigError(
                    PREFIX + name,
                    f"required in production (at least {MIN_SECRET_BYTES} random bytes, base64)",
                )
    blind_index_secret = _decode_setting("BLIND_INDEX_KEY", blind_index_env)
    signing_key = _decode_setting("TOKEN_SIGNING_KEY", signing_env)
    if blind_index_secret is None or signing_key is None:
        from_file = _load_dev_file(settings.data_dir / DEV_SECRETS_FILE)
        blind_index_secret = blind_index_secret or from_file.blind_index_key
        signing_key = signing_key or from_file.token_signing_key
    try:
        root = derive_blind_index_root(blind_index_secret)
    except KeyMaterialError as error:  # pragma: no cover - lengths are checked on decoding
        raise ConfigError(f"{PREFIX}BLIND_INDEX_KEY", str(error)) from None
    return ServiceSecrets(blind_index_root=root, token_signing_key=signing_key)


def _decode_setting(name: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return _decode(value)
    except ValueError as error:
        raise ConfigError(PREFIX + name, str(error)) from None


def _decode(value: str) -> bytes:
    """Standard or URL-safe base64, padding optional; errors never echo the value."""
    text = value.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("not valid base64") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"must decode to at least {MIN_SECRET_BYTES} bytes (got {len(raw)})")
    return raw


class _DevSecrets(msgspec.Struct, frozen=True):
    blind_index_key: bytes
    token_signing_key: bytes


def _load_dev_file(path: Path) -> _DevSecrets:
    global _announced
    created = False
    if not path.exists():
        document = _DevSecretsFile(
            version=_DEV_FILE_VERSION,
            blind_index_key=generate_secret(),
            token_signing_key=generate_secret(),
            created_at=datetime.now(UTC).replace(microsecond=0),
        )
        content = msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
        try:
            created = _publish_new(path, content)
        except OSError as exc:
            raise _file_error(path, f"cannot be written ({exc.strerror})") from None
    secrets_read = _read_dev_file(path)
    if created or not _announced:
        _announced = True
        banner = "!" * 78
        message = DEV_SECRETS_WARNING.format(path=path)
        if created:
            message = "generated a new development secrets file. " + message
        logger.warning("%s\n%s\n%s", banner, message, banner)
    return secrets_read


def _file_error(path: Path, problem: str) -> ConfigError:
    # The file lives in the data directory, so that is the setting an operator changes.
    return ConfigError(f"{PREFIX}DATA_DIR", f"development secrets file {str(path)!r} {problem}")


def _read_dev_file(path: Path) -> _DevSecrets:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise _file_error(path, f"cannot be opened ({exc.strerror})") from None
    info = os.fstat(fd)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(info.st_mode):
            raise _file_error(path, "is not a regular file")
        # Same rule as the key file and OpenSSH private keys: nobody but the owner may read it.
        if os.name == "posix" and info.st_mode & 0o077:
            raise _file_error(
                path,
                f"is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o});"
                " chmod 600 it",
            )
        raw = handle.read()
    try:
        document = msgspec.json.decode(raw, type=_DevSecretsFile)
    except msgspec.DecodeError:
        raise _file_error(path, "is not a valid secrets file") from None
    if document.version != _DEV_FILE_VERSION:
        raise _file_error(path, f"has unsupported format version {document.version}")
    try:
        return _DevSecrets(
            blind_index_key=_decode(document.blind_index_key),
            token_signing_key=_decode(document.token_signing_key),
        )
    except ValueError as error:
        raise _file_error(path, f"holds an unusable secret: {error}") from None


def _publish_new(path: Path, content: bytes) -> bool:
    """Create ``path`` with ``content``, mode 0600, atomically; False if it already exists.

    link() refuses to overwrite, so of two first starts racing exactly one file wins and both
    processes then read it: tokens signed by one instance must verify on the other.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
