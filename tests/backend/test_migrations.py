"""Migrations go forward and back on both dialects, and re-running them changes nothing."""

import asyncio

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import backend.db.models  # noqa: F401
from backend.config import Settings
from backend.db import migrate
from backend.db.engine import create_engine
from tests.conftest import SettingsFactory


def _tables(settings: Settings) -> set[str]:
    async def read() -> set[str]:
        engine: AsyncEngine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                names = await connection.run_sync(lambda c: inspect(c).get_table_names())
        finally:
            await engine.dispose()
        return set(names)

    return asyncio.run(read())


def test_round_trip_up_down_up(empty_database_url: str, make_settings: SettingsFactory) -> None:
    settings = make_settings(empty_database_url)
    assert migrate.current_revision(settings) is None

    migrate.upgrade(settings)
    assert migrate.current_revision(settings) == migrate.head_revision()
    model_tables = set(SQLModel.metadata.tables)
    assert model_tables <= _tables(settings)

    migrate.downgrade(settings, "base")
    assert migrate.current_revision(settings) is None
    assert not (model_tables & _tables(settings))

    migrate.upgrade(settings)
    assert migrate.current_revision(settings) == migrate.head_revision()


def test_upgrading_an_up_to_date_database_is_a_no_op(
    database_url: str, make_settings: SettingsFactory
) -> None:
    settings = make_settings(database_url)
    before = _tables(settings)
    migrate.upgrade(settings)
    migrate.upgrade(settings)
    assert _tables(settings) == before
    assert migrate.current_revision(settings) == migrate.head_revision()


def test_the_models_match_the_migrations(database_url: str, make_settings: SettingsFactory) -> None:
    """A model changed without a migration is caught here, not in production."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    settings = make_settings(database_url)

    async def diff() -> list[object]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda c: compare_metadata(
                        MigrationContext.configure(c, opts={"compare_type": True}),
                        SQLModel.metadata,
                    )
                )
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []


@pytest.mark.parametrize("revision", ["nonexistent"])
def test_an_unknown_revision_is_an_error(
    database_url: str, make_settings: SettingsFactory, revision: str
) -> None:
    from alembic.util.exc import CommandError

    with pytest.raises(CommandError):
        migrate.upgrade(make_settings(database_url), revision)


def test_the_migration_history_has_a_single_head() -> None:
    """Two branches landing migrations at once must be linearised before they merge."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}; set one's down_revision"
