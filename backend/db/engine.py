"""The one engine factory, for SQLite (aiosqlite) and PostgreSQL (asyncpg).

SQLite: WAL so readers do not block the writer, a busy timeout instead of instant "database is
locked", foreign keys on (off by default in SQLite), and explicit BEGIN because Python 3.11's
sqlite3 driver otherwise leaves SELECTs and DDL outside transactions (engineering-notes §B.3.10).
One pooled connection: SQLite has one writer anyway, and more connections measured slower here
(shared/ceilings.md §3).
"""

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.config import DatabaseKind, Settings
from backend.db import sqlite_driver

SQLITE_BUSY_TIMEOUT_MS = 5000


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.database_kind is DatabaseKind.SQLITE:
        return _sqlite_engine(settings.database_url)
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        # No pre-ping: it costs a round trip on every checkout (~9 % of a submission's CPU).
        # A PostgreSQL restart is survived without it: the first statement on a dead connection
        # fails as a disconnect (503 + Retry-After), which invalidates every pooled connection
        # opened before it, and the next checkouts connect afresh (tests/faults: restart).
        pool_pre_ping=False,
        # SQL parameters can hold PHI ciphertext or identifiers; keep them out of error messages.
        hide_parameters=True,
        connect_args={"server_settings": {"application_name": "interlude"}},
    )


def _sqlite_engine(url: str) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        from pathlib import Path

        Path(database).parent.mkdir(parents=True, exist_ok=True)
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        # The same aiosqlite connection, one worker-thread hand-off per statement instead of four
        # (backend/db/sqlite_driver.py).
        parsed = parsed.set(drivername=sqlite_driver.DRIVER_NAME)
    engine = create_async_engine(
        parsed, pool_size=1, max_overflow=0, pool_timeout=30, hide_parameters=True
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; "begin" below issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Durable against process crashes; the last commits can be lost only on power loss.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so a CLI process and the server never
        # deadlock upgrading read locks (SQLITE_BUSY_SNAPSHOT, which busy_timeout cannot wait out).
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # SQLModel's AsyncSession (has .exec); attributes stay readable after commit.
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
