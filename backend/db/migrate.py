"""Schema migrations (Alembic), forward and back, on SQLite and PostgreSQL.

On PostgreSQL a transaction-scoped advisory lock serialises migrators, so replicas or a migration
job started twice cannot apply the same revision concurrently.
"""

import asyncio
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import DatabaseKind, Settings
from backend.db.engine import create_engine

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
_ADVISORY_LOCK_KEY: Final = 0x1E7E_41DE  # arbitrary constant shared by every Interlude migrator


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@cache
def head_revisions() -> tuple[str, ...]:
    """Every head of the migration history (one, unless branches were not linearised)."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


async def _with_connection(engine: AsyncEngine, action: Callable[[Connection], object]) -> object:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
            )
        return await connection.run_sync(action)


def _alembic(operation: Callable[[Config], None]) -> Callable[[Connection], object]:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        operation(config)

    return run


async def upgrade_async(settings: Settings, revision: str = "head") -> None:
    engine = create_engine(settings)
    try:
        await _with_connection(engine, _alembic(lambda c: command.upgrade(c, revision)))
    finally:
        await engine.dispose()


async def downgrade_async(settings: Settings, revision: str) -> None:
    engine = create_engine(settings)
    try:
        await _with_connection(engine, _alembic(lambda c: command.downgrade(c, revision)))
    finally:
        await engine.dispose()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision_async(settings: Settings) -> str | None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            revision = await connection.run_sync(_current)
    finally:
        await engine.dispose()
    return revision


def upgrade(settings: Settings, revision: str = "head") -> None:
    asyncio.run(upgrade_async(settings, revision))


def downgrade(settings: Settings, revision: str) -> None:
    asyncio.run(downgrade_async(settings, revision))


def current_revision(settings: Settings) -> str | None:
    return asyncio.run(current_revision_async(settings))


def autogenerate(settings: Settings, message: str) -> None:
    """Write a new revision from the difference between the models and the database (dev tool)."""

    def operation(config: Config) -> None:
        command.revision(config, message=message, autogenerate=True)

    engine = create_engine(settings)

    async def run() -> None:
        try:
            await _with_connection(engine, _alembic(operation))
        finally:
            await engine.dispose()

    asyncio.run(run())


__all__ = [
    "DatabaseKind",
    "autogenerate",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]
