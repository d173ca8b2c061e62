"""Settings: read once from ``INTERLUDE_*`` environment variables into a typed, frozen object.

A configuration error stops start-up with one line that names the setting (``ConfigError``), never a
traceback: an operator at 3 a.m. should see *which* variable is wrong, and nothing secret.
"""

import os
import socket
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Final

import msgspec
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

PREFIX: Final = "INTERLUDE_"
# Variables that belong to the test harness, not to the service; accepted and ignored here.
_HARNESS_VARIABLES: Final = frozenset(
    {
        "INTERLUDE_TEST_POSTGRES_URL",
        "INTERLUDE_REQUIRE_POSTGRES",
        "INTERLUDE_REQUIRE_BROWSER",
        "INTERLUDE_BENCH_POSTGRES_URL",
    }
)
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A setting is missing, malformed or not allowed; the message names the variable."""

    message_is_safe_to_log = True

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class DatabaseKind(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The effective configuration. Build it with ``load_settings``; never mutate it."""

    env: Environment
    data_dir: Path
    database_url: str
    database_kind: DatabaseKind
    db_pool_size: int
    host: str
    port: int
    workers: int
    log_level: str
    log_format: str
    # Key-encryption key: material from configuration (production) or a key file.
    kek: str | None
    kek_file: Path
    # INTERLUDE_BLIND_INDEX_KEY: base64 secret (>= 32 random bytes) from which blind-index keys
    # are derived (engineering-notes §D.6); not the KEK, so a KEK rotation leaves indexes valid.
    blind_index_key: str | None
    # INTERLUDE_TOKEN_SIGNING_KEY: base64 HMAC key (>= 32 bytes) that signs access tokens.
    # Both are required in production; development generates <data_dir>/dev-secrets.json.
    token_signing_key: str | None
    auto_migrate: bool
    instance_id: str
    timer_interval_seconds: float
    # A JSON file with the delivery channels (notifications.registry.NotificationsConfig:
    # webhook endpoints, SMTP, SMS, Web Push, FCM, APNs). None: every message goes to the
    # console channel, a JSON-lines file in the data directory (the development default).
    notifications_config: Path | None = None

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for PostgreSQL or an in-memory database."""
        if self.database_kind is not DatabaseKind.SQLITE:
            return None
        database = make_url(self.database_url).database
        if not database or database == ":memory:":
            return None
        return Path(database)

    def masked(self) -> dict[str, object]:
        """The settings as printable data, with passwords and key material replaced."""
        out: dict[str, object] = {}
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if field == "database_url":
                value = make_url(value).render_as_string(hide_password=True)
            elif field in _SECRET_FIELDS and value is not None:
                value = "***"
            out[field] = str(value) if isinstance(value, Path | StrEnum) else value
        return out


_SECRET_FIELDS: Final = frozenset({"kek", "blind_index_key", "token_signing_key"})

_KNOWN: Final = frozenset(
    {
        "ENV",
        "DATA_DIR",
        "DATABASE_URL",
        "DB_POOL_SIZE",
        "HOST",
        "PORT",
        "WORKERS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "KEK",
        "KEK_FILE",
        "BLIND_INDEX_KEY",
        "TOKEN_SIGNING_KEY",
        "AUTO_MIGRATE",
        "INSTANCE_ID",
        "TIMER_INTERVAL_SECONDS",
        "NOTIFICATIONS_CONFIG",
    }
)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default: the process environment).

    Raises:
        ConfigError: on the first invalid or unknown ``INTERLUDE_*`` variable.
    """
    env_vars = os.environ if environ is None else environ
    reader = _Reader(env_vars)
    for name in sorted(env_vars):
        known = name in _HARNESS_VARIABLES or name.removeprefix(PREFIX) in _KNOWN
        if name.startswith(PREFIX) and not known:
            # A typo such as INTERLUDE_DATABSE_URL must not silently fall back to a default.
            raise ConfigError(name, "unknown setting")

    env = reader.choice("ENV", [e.value for e in Environment], Environment.DEVELOPMENT.value)
    environment = Environment(env)
    data_dir = Path(reader.text("DATA_DIR", "var")).expanduser()
    default_url = f"sqlite+aiosqlite:///{data_dir / 'interlude.sqlite3'}"
    database_url, kind = _database_url(reader.text("DATABASE_URL", default_url))
    workers = reader.integer("WORKERS", 1, minimum=1, maximum=64)
    if kind is DatabaseKind.SQLITE and workers > 1:
        raise ConfigError(
            f"{PREFIX}WORKERS",
            "SQLite supports one instance only; use PostgreSQL for several workers or replicas",
        )
    kek = reader.optional("KEK")
    kek_file_raw = reader.optional("KEK_FILE")
    if environment is Environment.PRODUCTION and kek is None and kek_file_raw is None:
        raise ConfigError(
            f"{PREFIX}KEK",
            "production needs explicit key material (INTERLUDE_KEK or INTERLUDE_KEK_FILE); "
            "the generated development key is refused",
        )
    if kek is not None and kek_file_raw is not None:
        raise ConfigError(f"{PREFIX}KEK", "set INTERLUDE_KEK or INTERLUDE_KEK_FILE, not both")
    kek_file = Path(kek_file_raw).expanduser() if kek_file_raw else data_dir / "dev-kek.json"

    return Settings(
        env=environment,
        data_dir=data_dir,
        database_url=database_url,
        database_kind=kind,
        db_pool_size=reader.integer("DB_POOL_SIZE", 10, minimum=1, maximum=200),
        host=reader.text("HOST", "127.0.0.1"),
        port=reader.integer("PORT", 8000, minimum=0, maximum=65535),
        workers=workers,
        log_level=reader.choice("LOG_LEVEL", list(_LOG_LEVELS), "INFO", upper=True),
        log_format=reader.choice("LOG_FORMAT", ["json", "text"], "json"),
        kek=kek,
        kek_file=kek_file,
        # Checked and decoded by backend.keyring.secrets.load_service_secrets at start-up.
        blind_index_key=reader.optional("BLIND_INDEX_KEY"),
        token_signing_key=reader.optional("TOKEN_SIGNING_KEY"),
        # Production replicas must not race each other to migrate: a migration job runs it there.
        auto_migrate=reader.boolean("AUTO_MIGRATE", environment is Environment.DEVELOPMENT),
        instance_id=reader.text("INSTANCE_ID", f"{socket.gethostname()}-{os.getpid()}"),
        timer_interval_seconds=reader.number("TIMER_INTERVAL_SECONDS", 10.0, 0.05, 3600.0),
        notifications_config=_optional_path(reader.optional("NOTIFICATIONS_CONFIG")),
    )


def _optional_path(raw: str | None) -> Path | None:
    return Path(raw).expanduser() if raw else None


def _database_url(raw: str) -> tuple[str, DatabaseKind]:
    name = f"{PREFIX}DATABASE_URL"
    try:
        url: URL = make_url(raw)
    except ArgumentError:
        raise ConfigError(name, "not a database URL") from None
    if url.drivername == "sqlite+aiosqlite":
        return raw, DatabaseKind.SQLITE
    if url.drivername == "postgresql+asyncpg":
        if not url.database:
            raise ConfigError(name, "the PostgreSQL URL names no database")
        return raw, DatabaseKind.POSTGRESQL
    raise ConfigError(
        name, "driver must be sqlite+aiosqlite or postgresql+asyncpg (async drivers only)"
    )


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, key: str) -> str | None:
        value = self._environ.get(PREFIX + key, "").strip()
        return value or None

    def text(self, key: str, default: str) -> str:
        return self.optional(key) or default

    def choice(self, key: str, allowed: list[str], default: str, *, upper: bool = False) -> str:
        raw = self.optional(key)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ConfigError(PREFIX + key, f"must be one of {', '.join(allowed)}")
        return value

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self.optional(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(PREFIX + key, "must be a whole number") from None
        if not minimum <= value <= maximum:
            raise ConfigError(PREFIX + key, f"must be between {minimum} and {maximum}")
        return value

    def number(self, key: str, default: float, minimum: float, maximum: float) -> float:
        raw = self.optional(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(PREFIX + key, "must be a number") from None
        if not minimum <= value <= maximum:
            raise ConfigError(PREFIX + key, f"must be between {minimum} and {maximum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        raw = self.optional(key)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(PREFIX + key, "must be true or false")
