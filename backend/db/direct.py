"""Core statements run directly on the driver, in the connection's current transaction.

Through SQLAlchemy's execution each statement of the submission path cost ~0.19 ms of client CPU
here against ~0.07 ms on the bare driver (README, submissions bench): an execution context, a
cursor adapter, a result and its metadata per call, and a greenlet switch. A `DirectStatement`
keeps the statement a Core construct (one definition; the dialect's SQL; the columns' own type
conversions, such as `types.UTCDateTime` and SQLite's UUID strings), compiles it once per
dialect and runs it on the driver: asyncpg through SQLAlchemy's own prepared-statement cache, or
sqlite3 in the one-hop driver's thread (`sqlite_driver.run_in_driver_thread`).

Errors come out as through SQLAlchemy (`DBAPIError` and its subclasses, parameters hidden), and
a lost PostgreSQL connection invalidates the pooled one, so the problem handlers answer 503 as
they do for any other statement.

Limits, checked when a statement is first compiled for a dialect: positional parameters only
(both dialects here), no expanding or literal-execute parameters (``in_`` of a list), no
Python-side column defaults (give every value). Rows are named tuples of the selected labels.

Relies on SQLAlchemy internals pinned by the lock file and covered by every test that submits:
`SQLCompiler.positiontup`, `._bind_processors`, `._result_columns`, and the asyncpg adapter's
``_execute_mutex``, ``_transaction``, ``_start_transaction``, ``_prepare`` and
``_handle_exception``.
"""

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from backend.db.sqlite_driver import is_one_hop, pooled_connection, run_in_driver_thread

__all__ = ["DirectStatement", "outside_transaction"]

_OUTSIDE: ContextVar[bool] = ContextVar("direct_outside_transaction", default=False)


@contextmanager
def outside_transaction() -> Iterator[None]:
    """Within it, a direct statement on a PostgreSQL connection with no transaction open yet does
    not open one: it runs on its own (autocommit), as one atomic statement. A submission reads
    this way, and stores with one statement when that is all it writes: no BEGIN and COMMIT
    round trips. Once anything opened the transaction, statements run in it as usual. SQLite
    connections are in their transaction from the start (`engine`: BEGIN IMMEDIATE)."""
    token = _OUTSIDE.set(True)
    try:
        yield
    finally:
        _OUTSIDE.reset(token)


_Processor = Callable[[Any], Any] | None


class _Compiled(NamedTuple):
    sql: str
    compiled: SQLCompiler
    positions: tuple[str, ...]
    binds: tuple[_Processor, ...]
    results: tuple[_Processor, ...]
    converted: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(position, conversion) of the result columns that have one."""
    row: Any  # the named-tuple class of a result row (None: no rows)


class DirectStatement:
    """A Core statement compiled once per dialect and executed on the driver (module doc)."""

    __slots__ = ("_by_dialect", "_statement")

    def __init__(self, statement: Executable) -> None:
        self._statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is not None:
            return found
        compiled = cast(ClauseElement, self._statement).compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if not compiled.positional or compiled.positiontup is None:
            raise TypeError("direct statements need a positional parameter style")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise TypeError("direct statements cannot expand parameters (in_ of a list)")
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise TypeError("direct statements cannot run Python-side column defaults")
        processors: Mapping[str, Any] = compiled._bind_processors
        positions = tuple(compiled.positiontup)
        columns = compiled._result_columns
        results = tuple(column.type._cached_result_processor(dialect, None) for column in columns)
        row = namedtuple("DirectRow", [column.keyname for column in columns]) if columns else None
        found = _Compiled(
            sql=compiled.string,
            compiled=compiled,
            positions=positions,
            binds=tuple(processors.get(name) for name in positions),
            results=results,
            converted=tuple(
                (index, process) for index, process in enumerate(results) if process is not None
            ),
            row=row,
        )
        self._by_dialect[dialect.name] = found
        return found

    async def all(self, connection: AsyncConnection, parameters: Mapping[str, Any]) -> list[Any]:
        """Every row the statement returns (named tuples; [] for a statement without rows)."""
        if not _direct_capable(connection):
            # Another driver (none is configured here; a test's plain engine): SQLAlchemy runs it.
            return list((await connection.execute(self._statement, parameters)).all())
        compiled = self._compile(connection.dialect)
        values = compiled.compiled.construct_params(parameters, escape_names=False)
        arguments = tuple(
            value if bind is None else bind(value)
            for bind, value in zip(
                compiled.binds, (values[name] for name in compiled.positions), strict=True
            )
        )
        if is_one_hop(connection):
            raw = await _sqlite_fetch(connection, compiled.sql, arguments)
        else:
            raw = await _asyncpg_fetch(connection, compiled.sql, arguments)
        if compiled.row is None:
            return []
        make = compiled.row._make
        converted = compiled.converted
        if not converted:
            return [make(record) for record in raw]
        # Only the columns with a conversion are touched, in place in a list: a generator over
        # every column of every row cost more than the conversions (a course's responses are
        # read on every submission).
        width = len(compiled.results)
        rows = []
        for record in raw:
            fields = list(record)
            if len(fields) != width:
                raise RuntimeError("the driver returned a row of another shape than compiled")
            for index, process in converted:
                fields[index] = process(fields[index])
            rows.append(make(fields))
        return rows


def _direct_capable(connection: AsyncConnection) -> bool:
    return is_one_hop(connection) or connection.dialect.driver == "asyncpg"


def _wrap(sql: str, arguments: tuple[Any, ...], error: Exception, dialect: Dialect) -> Exception:
    return DBAPIError.instance(
        sql,
        arguments,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        dialect=dialect,
        ismulti=False,
    )


async def _asyncpg_fetch(
    connection: AsyncConnection, sql: str, arguments: tuple[Any, ...]
) -> list[Any]:
    adapted: Any = (await pooled_connection(connection)).dbapi_connection
    dialect = connection.dialect
    try:
        # What SQLAlchemy's asyncpg cursor does (`_prepare_and_execute`), without the cursor.
        async with adapted._execute_mutex:
            if adapted._transaction is None and not _OUTSIDE.get():
                await adapted._start_transaction()
            try:
                prepared, _attributes = await adapted._prepare(
                    sql,
                    dialect._invalidate_schema_cache_asof,  # type: ignore[attr-defined]
                )
                return list(await prepared.fetch(*arguments))
            except Exception as error:  # translated as SQLAlchemy's cursor does
                adapted._handle_exception(error)
    except dialect.loaded_dbapi.Error as error:
        wrapped = _wrap(sql, arguments, error, dialect)
        if dialect.is_disconnect(error, adapted, None):
            if isinstance(wrapped, DBAPIError):
                wrapped.connection_invalidated = True
            await connection.invalidate(error)
        raise wrapped from error
    raise AssertionError("unreachable")  # pragma: no cover - _handle_exception always raises


async def _sqlite_fetch(
    connection: AsyncConnection, sql: str, arguments: tuple[Any, ...]
) -> list[Any]:
    def run(driver: sqlite3.Connection) -> list[Any]:
        cursor = driver.execute(sql, arguments)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    try:
        return await run_in_driver_thread(connection, run)
    except sqlite3.Error as error:
        raise _wrap(sql, arguments, error, connection.dialect) from error
