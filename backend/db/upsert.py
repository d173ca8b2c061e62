"""The dialect's own INSERT, for ``ON CONFLICT`` clauses (PostgreSQL and SQLite spell them the
same in SQLAlchemy, but each dialect has its own ``insert`` construct)."""

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def dialect_insert(connection: AsyncConnection) -> Any:
    """``postgresql.insert`` or ``sqlite.insert``, for the connection's database."""
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
