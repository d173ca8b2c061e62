"""Alembic environment. Runs on a connection handed in by ``backend.db.migrate`` (async engine)."""

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import backend.db.models  # noqa: F401  (registers every table on SQLModel.metadata)

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    msg = "run migrations through `interlude migrate`, which supplies the connection"
    raise RuntimeError(msg)
_run(connection)
