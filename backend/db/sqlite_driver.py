"""SQLite through aiosqlite with one thread hop per statement instead of four.

SQLAlchemy's aiosqlite adapter creates a cursor, executes, fetches and closes it as four separate
calls into aiosqlite's worker thread, each a queue hand-off, a thread wake-up and a callback into
the event loop. On the submission path (about ten statements) those hand-offs were the largest
cost on SQLite (py-spy: ~35 % of the process's CPU). This cursor runs create-execute-fetch-close
as one function in the same worker thread, so the statement, its errors and its results are
exactly sqlite3's; only the number of hand-offs changes. Everything else (the connection,
transactions, isolation, server-side cursors, termination) is SQLAlchemy's aiosqlite dialect.

Relies on two aiosqlite internals, pinned by the lock file and covered by every SQLite test:
``Connection._execute(fn)`` (run ``fn`` in the connection's thread) and ``Connection._conn``
(the underlying ``sqlite3.Connection``, only touched inside that thread).
"""

import collections
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

__all__ = [
    "DRIVER_NAME",
    "OneHopSQLiteDialect",
    "is_one_hop",
    "pooled_connection",
    "run_in_driver_thread",
]

T = TypeVar("T")

DRIVER_NAME = "sqlite+interlude_aiosqlite"

_Outcome = tuple[Any, int, int | None, list[Any]]


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statement runs in one call to the worker thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass  # rows are fetched whole, in the worker thread

    async def _async_soft_close(self) -> None:
        return  # nothing is open: the sqlite3 cursor closed in the worker thread

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        return await self._run(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._run(operation, seq_of_parameters, many=True)

    async def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            description, rowcount, lastrowid, rows = await connection._execute(  # type: ignore[no-untyped-call]
                _run, connection._conn, operation, parameters, many
            )
        self._description = description
        self._rowcount = rowcount
        self._lastrowid = lastrowid
        self._rows = collections.deque(rows)

    def nextset(self) -> None:
        return None


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn:
            connection = creator_fn(*arg, **kw)
        else:
            connection = self.aiosqlite.connect(*arg, **kw)
            connection._thread.daemon = True  # as SQLAlchemy does: never block interpreter exit
        return _Connection(self, await_(connection))


class OneHopSQLiteDialect(SQLiteDialect_aiosqlite):
    driver = "interlude_aiosqlite"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> _DBAPI:
        return _DBAPI(aiosqlite, sqlite3)


registry.register("sqlite.interlude_aiosqlite", __name__, "OneHopSQLiteDialect")


def is_one_hop(connection: AsyncConnection) -> bool:
    """Whether this connection runs on this module's dialect (so `run_in_driver_thread` works)."""
    return isinstance(connection.dialect, OneHopSQLiteDialect)


async def pooled_connection(connection: AsyncConnection) -> PoolProxiedConnection:
    """The connection's pooled DBAPI connection: `AsyncConnection.get_raw_connection` without its
    greenlet switch (~40 us) when the connection is already checked out, as it is in a
    transaction."""
    sync = connection.sync_connection
    checked_out = None if sync is None else sync._dbapi_connection
    if checked_out is not None:
        return checked_out
    return await connection.get_raw_connection()


async def run_in_driver_thread(
    connection: AsyncConnection, fn: Callable[[sqlite3.Connection], T]
) -> T:
    """`fn(sqlite3_connection)` in the connection's worker thread, in its current transaction,
    serialised with its other statements: for a read that wants the driver's rows as they come
    (the research export turns them into columns a few at a time, so thousands of row tuples
    never live at once) rather than a SQLAlchemy result."""
    if not is_one_hop(connection):
        raise TypeError("not a connection of the one-hop SQLite dialect")
    adapted: Any = (await pooled_connection(connection)).dbapi_connection
    driver: aiosqlite.Connection = adapted._connection
    async with adapted._execute_mutex:
        result: T = await driver._execute(fn, driver._conn)  # type: ignore[no-untyped-call]
        return result
