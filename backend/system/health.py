"""Liveness and readiness probes.

``/healthz`` answers while the process can serve HTTP. ``/readyz`` tells a load balancer the truth:
the database answers and is at the schema this code expects, the timers run, key material is
loaded. Neither says anything about patients.
"""

import asyncio
from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from backend.db.migrate import head_revisions
from backend.lib.problems import PROBLEM_MEDIA_TYPE
from backend.state import Runtime

_DATABASE_TIMEOUT_SECONDS = 2.0


async def _database_checks(runtime: Runtime) -> dict[str, str]:
    try:
        engine = runtime.require_engine()
        async with asyncio.timeout(_DATABASE_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            try:
                revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            except DBAPIError:
                revision = None
    except Exception:  # any failure means "not ready"; the reason is not for the caller
        return {"database": "unreachable", "schema": "unknown"}
    heads = head_revisions()
    schema = "ok" if len(heads) == 1 and revision in heads else "not migrated"
    return {"database": "ok", "schema": schema}


class HealthController(Controller):
    path = "/"
    opt = {"public": True}  # noqa: RUF012  (probes answer load balancers, which carry no token)
    tags = ["operations"]  # noqa: RUF012  (Litestar reads it as a class attribute)
    include_in_schema = True

    @get("/healthz", summary="Liveness: the process answers HTTP")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", summary="Readiness: database, schema, timers and key material", cache=False)
    async def readyz(self, runtime: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
        checks = await _database_checks(runtime)
        timers = runtime.timers.health()
        checks["timers"] = (
            "ok"
            if runtime.timers.running
            and all(state in ("ok", "starting") for state in timers.values())
            else "not running"
        )
        checks["keys"] = "ok" if runtime.kek.kids() else "missing"
        if all(value == "ok" for value in checks.values()):
            return Response({"status": "ready", "checks": checks})
        return Response(
            {
                "type": "about:blank",
                "title": "Service Unavailable",
                "status": 503,
                "detail": "The service is not ready to take traffic.",
                "checks": checks,
                "timers": timers,
            },
            status_code=503,
            media_type=PROBLEM_MEDIA_TYPE,
        )
