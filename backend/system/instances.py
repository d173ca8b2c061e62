"""Registry of running app instances (rows in ``service_instances``); Core statements only."""

import os
import socket
import uuid
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.models import ServiceInstance
from backend.version import VERSION

_table = ServiceInstance.__table__  # type: ignore[attr-defined]


async def register(engine: AsyncEngine, name: str, now: datetime) -> str:
    instance_id = uuid.uuid4().hex
    async with engine.begin() as connection:
        await connection.execute(
            insert(_table).values(
                id=instance_id,
                name=name[:128],
                hostname=socket.gethostname()[:255],
                pid=os.getpid(),
                version=VERSION,
                started_at=now,
                heartbeat_at=now,
            )
        )
    return instance_id


async def heartbeat(engine: AsyncEngine, instance_id: str, now: datetime) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(_table).where(_table.c.id == instance_id).values(heartbeat_at=now)
        )


async def mark_stopped(engine: AsyncEngine, instance_id: str, now: datetime) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(_table).where(_table.c.id == instance_id).values(stopped_at=now)
        )


async def count_instances(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        rows = await connection.execute(select(_table.c.id))
        return len(rows.all())
