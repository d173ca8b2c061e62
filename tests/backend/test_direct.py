"""`db.direct.DirectStatement`: the same rows, types, transactions and errors as SQLAlchemy's own
execution, on the real SQLite and PostgreSQL engines the service uses."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Uuid,
    bindparam,
    literal,
    select,
    text,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import Settings
from backend.db.direct import DirectStatement, outside_transaction
from backend.db.engine import create_engine
from backend.db.types import UTCDateTime, UuidText

_metadata = MetaData()
_things = Table(
    "direct_statement_things",
    _metadata,
    Column("id", Uuid, primary_key=True),
    Column("owner_id", Uuid, nullable=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("at", UTCDateTime, nullable=False),
    Column("blob", LargeBinary, nullable=True),
    Column("flag", Boolean, nullable=False),
    Column("count", Integer, nullable=True),
)
_t = _things.c
_COLUMNS = ("id", "owner_id", "name", "at", "blob", "flag", "count")
_INSERT = DirectStatement(
    _things.insert().values({name: bindparam(name) for name in _COLUMNS}).returning(_t.id, _t.at)
)
_BY_NAME = DirectStatement(select(_things).where(_t.name == bindparam("name")))
_ALL = select(_things).order_by(_t.name)
# A union with literal parts and typed NULLs, as the submission's reads are built.
_PARTS = DirectStatement(
    union_all(
        select(literal(0).label("part"), _t.id, _t.at).where(_t.name == bindparam("name")),
        select(literal(1).label("part"), _t.id, _t.at).where(_t.flag.is_(True)),
    )
)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)
    yield engine
    await engine.dispose()


def _row(name: str, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "owner_id": None,
        "name": name,
        "at": datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC),
        "blob": b"\x00\x01ciphertext\xff",
        "flag": True,
        "count": None,
    }
    values.update(changes)
    return values


async def test_rows_and_types_match_sqlalchemys(engine: AsyncEngine) -> None:
    first = _row("first", owner_id=uuid.uuid4(), count=7, flag=False)
    # An offset other than UTC goes in as the same instant and comes back in UTC.
    second = _row("second", at=datetime(2026, 11, 23, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    async with engine.begin() as connection:
        inserted = await _INSERT.all(connection, first)
        await _INSERT.all(connection, second)
    assert [(r.id, r.at) for r in inserted] == [(first["id"], first["at"])]

    async with engine.connect() as connection:
        [direct] = await _BY_NAME.all(connection, {"name": "first"})
        core = (await connection.execute(select(_things).where(_t.name == "first"))).one()
        everything = (await connection.execute(_ALL)).all()
    assert tuple(direct) == tuple(core)
    assert direct._fields == _COLUMNS
    assert isinstance(direct.id, uuid.UUID)
    assert isinstance(direct.owner_id, uuid.UUID)
    assert direct.at == first["at"]
    assert direct.at.tzinfo is not None
    assert direct.blob == first["blob"]
    assert direct.flag is False
    assert direct.count == 7
    assert [r.name for r in everything] == ["first", "second"]
    async with engine.connect() as connection:
        [later] = await _BY_NAME.all(connection, {"name": "second"})
    assert later.at == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert later.at.utcoffset() == timedelta(0)


async def test_a_uuid_read_as_text_is_its_canonical_text(engine: AsyncEngine) -> None:
    row = _row("text", owner_id=None)
    as_text = DirectStatement(
        select(
            type_coerce(_t.id, UuidText()).label("id"),
            type_coerce(_t.owner_id, UuidText()).label("owner_id"),
        ).where(_t.name == bindparam("name"))
    )
    async with engine.begin() as connection:
        await _INSERT.all(connection, row)
        [read] = await as_text.all(connection, {"name": "text"})
    assert (read.id, read.owner_id) == (str(row["id"]), None)
    assert type(read.id) is str


def test_uuid_text_refuses_to_bind_and_reads_any_form_of_a_uuid() -> None:
    value = uuid.uuid4()
    dialect = sqlite.dialect()
    reading = UuidText()
    for stored in (value.hex, value.hex.upper(), str(value), value):
        assert reading.process_result_value(stored, dialect) == str(value)
    with pytest.raises(ValueError, match="badly formed"):
        reading.process_result_value("not a uuid", dialect)
    with pytest.raises(TypeError):
        reading.process_bind_param(value, dialect)


async def test_union_with_literals_and_no_rows(engine: AsyncEngine) -> None:
    row = _row("only")
    async with engine.begin() as connection:
        await _INSERT.all(connection, row)
        parts = await _PARTS.all(connection, {"name": "only"})
        assert await _BY_NAME.all(connection, {"name": "absent"}) == []
    assert sorted((p.part, p.id) for p in parts) == [(0, row["id"]), (1, row["id"])]


async def test_runs_in_the_callers_transaction(engine: AsyncEngine) -> None:
    # A direct statement first in a transaction starts it (asyncpg begins lazily): rolled back,
    # nothing stays; SQLAlchemy's statements in the same transaction see its rows.
    async with engine.connect() as connection:
        transaction = await connection.begin()
        await _INSERT.all(connection, _row("rolled back"))
        seen = (await connection.execute(select(_t.name))).scalars().all()
        await transaction.rollback()
    assert seen == ["rolled back"]
    async with engine.begin() as connection:
        await connection.execute(_things.insert().values(_row("core first")))
        await _INSERT.all(connection, _row("direct second"))
    async with engine.connect() as connection:
        names = (await connection.execute(select(_t.name).order_by(_t.name))).scalars().all()
    assert names == ["core first", "direct second"]


async def test_errors_are_sqlalchemys_and_the_transaction_rolls_back(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await _INSERT.all(connection, _row("taken"))
    async with engine.connect() as connection:
        transaction = await connection.begin()
        await _INSERT.all(connection, _row("fresh"))
        with pytest.raises(IntegrityError) as caught:
            await _INSERT.all(connection, _row("taken"))
        await transaction.rollback()
    # Parameters (answers, ids) are not quoted in the message.
    assert "ciphertext" not in str(caught.value)
    async with engine.connect() as connection:
        taken = (await connection.execute(select(_t.name))).scalars().all()
    assert taken == ["taken"]


def test_refuses_what_it_cannot_run() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    names: Any = bindparam("names", expanding=True)
    expanding = DirectStatement(select(_t.id).where(_t.name.in_(names)))
    for dialect in (postgresql.asyncpg.dialect(), sqlite.dialect()):
        with pytest.raises(TypeError, match="expand"):
            expanding._compile(dialect)


@pytest.mark.postgres
async def test_a_lost_postgres_connection_is_invalidated(
    postgres_database_url: str, make_settings: object
) -> None:
    settings = make_settings(postgres_database_url)  # type: ignore[operator]
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_metadata.create_all)
        async with engine.connect() as connection:
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await connection.commit()
            async with engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as caught:
                await _BY_NAME.all(connection, {"name": "any"})
            assert caught.value.connection_invalidated
        # The pool hands out a working connection again.
        async with engine.connect() as connection:
            assert await _BY_NAME.all(connection, {"name": "any"}) == []
    finally:
        await engine.dispose()


async def test_outside_a_transaction_a_statement_stands_alone(engine: AsyncEngine) -> None:
    # PostgreSQL: no transaction open, the statement commits by itself (no BEGIN, no COMMIT
    # round trip), and a rollback after it has nothing to undo. Once a transaction is open,
    # statements run in it as usual. SQLite connections are always in their transaction.
    postgres = engine.dialect.name == "postgresql"
    async with engine.connect() as connection:
        transaction = await connection.begin()
        with outside_transaction():
            await _INSERT.all(connection, _row("alone"))
        if postgres:  # committed: another connection sees it (SQLite has one connection)
            async with engine.connect() as other:
                seen = (await other.execute(select(_t.name))).scalars().all()
            assert seen == ["alone"]
        await transaction.rollback()
    async with engine.connect() as connection:
        kept = (await connection.execute(select(_t.name))).scalars().all()
    assert kept == (["alone"] if postgres else [])

    async with engine.connect() as connection:
        transaction = await connection.begin()
        await _INSERT.all(connection, _row("opened"))  # opens the transaction
        with outside_transaction():
            await _INSERT.all(connection, _row("inside"))
        await transaction.rollback()
    async with engine.connect() as connection:
        kept = (await connection.execute(select(_t.name))).scalars().all()
    assert kept == (["alone"] if postgres else [])
