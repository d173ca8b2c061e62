"""Prometheus metrics: what operators watch, with no patient data in any name, label or value.

What is measured:

- HTTP: ``interlude_http_request_duration_seconds{method, route, status}`` (a histogram; its
  ``_count`` is the request counter). ``route`` is the route *template*, never the raw path, so
  an identifier in a URL never becomes a label (and label cardinality stays bounded).
- Submissions: ``interlude_submissions_total{route, outcome}`` (accepted / rejected / failed),
  counted by the same middleware from the submission routes' status codes. Replays of an
  idempotent submission count as accepted requests; the stored-row count is in the database.
- Alerts: ``interlude_alerts_total{kind, severity}``, incremented by the alerting code through
  :func:`count_alert` when it commits an alert.
- Outbox (read from the database at scrape time, so every replica reports the shared truth):
  ``interlude_outbox_messages{status}``, ``interlude_outbox_dead_letters``,
  ``interlude_outbox_oldest_due_age_seconds`` (0 when nothing is waiting).
- Check-ins: ``interlude_check_in_lag_seconds``, how long the oldest due check-in whose window is
  still open has waited to be handed to the outbox (0 when none waits).
- Any other database-derived gauge a domain area registers with :func:`register_probe`,
  evaluated at scrape time.
- Health of this process: ``interlude_timer_healthy{timer}``, ``interlude_timers_running``,
  ``interlude_metrics_database_up`` and ``interlude_build_info{version, instance}``.

Processes: counters and histograms live in this process's memory. Run one worker process per
container or replica (``INTERLUDE_WORKERS=1``, the default) and let Prometheus scrape every
replica; it sums across them. With several uvicorn workers in one container each scrape would
reach a random worker and counters would jump about (prometheus_client's multiprocess mode would
be needed; we do not use it). Database-derived gauges are the same on every replica: aggregate
them with ``max``, not ``sum``.

Access: ``/metrics`` is unauthenticated, like the probes, because Prometheus scrapers carry no
user token and the content is operational counts only (no identifiers, no free text, nothing
derived from one patient). It is still meant for the internal network: the reverse proxy in
front of the service should not forward ``/metrics`` from the internet (deploy/OPERATIONS.md).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.models.treatment import CheckIn
from backend.domain.outbox import repository as outbox
from backend.version import VERSION

if TYPE_CHECKING:
    from backend.state import Runtime

logger = logging.getLogger("interlude.metrics")

# One registry for the service, not prometheus_client's process-global default: tests build many
# apps in one process, and libraries must not add their own series to our scrape.
REGISTRY: Final = CollectorRegistry(auto_describe=True)

# Latency buckets around the 50 ms p99 target of a submission (issue 5) and the probes' 2 s limit.
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUEST_DURATION: Final = Histogram(
    "interlude_http_request_duration_seconds",
    "Time from request start to the end of the response, by route template and status",
    ["method", "route", "status"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
SUBMISSIONS: Final = Counter(
    "interlude_submissions",
    "Questionnaire submissions by route and outcome (accepted 2xx, rejected 4xx, failed 5xx)",
    ["route", "outcome"],
    registry=REGISTRY,
)
ALERTS: Final = Counter(
    "interlude_alerts",
    "Alerts raised by this process, by kind and severity",
    ["kind", "severity"],
    registry=REGISTRY,
)
OUTBOX_MESSAGES: Final = Gauge(
    "interlude_outbox_messages",
    "Outbox messages by status (shared database; aggregate replicas with max)",
    ["status"],
    registry=REGISTRY,
)
OUTBOX_DEAD_LETTERS: Final = Gauge(
    "interlude_outbox_dead_letters",
    "Outbox messages that ran out of attempts and need an operator",
    registry=REGISTRY,
)
OUTBOX_OLDEST_DUE_AGE: Final = Gauge(
    "interlude_outbox_oldest_due_age_seconds",
    "How long the oldest due, unsent outbox message has been waiting (0 when none)",
    registry=REGISTRY,
)
CHECK_IN_LAG: Final = Gauge(
    "interlude_check_in_lag_seconds",
    "How long the oldest due, open, not yet sent check-in has waited (0 when none)",
    registry=REGISTRY,
)
TIMER_HEALTHY: Final = Gauge(
    "interlude_timer_healthy",
    "1 while a timer runs on schedule (or awaits its first run), 0 when failing or stalled",
    ["timer"],
    registry=REGISTRY,
)
TIMERS_RUNNING: Final = Gauge(
    "interlude_timers_running", "1 while this process's timers run", registry=REGISTRY
)
DATABASE_UP: Final = Gauge(
    "interlude_metrics_database_up",
    "1 if the database answered this scrape's queries; 0 means database gauges are stale",
    registry=REGISTRY,
)
BUILD_INFO: Final = Gauge(
    "interlude_build_info",
    "Version and instance id of this process",
    ["version", "instance"],
    registry=REGISTRY,
)

# The submission routes (templates as Litestar reports them in the ASGI scope).
SUBMISSION_ROUTES: Final = frozenset({"/api/v1/responses", "/fhir/QuestionnaireResponse"})
_CHECK_INS: Final = CheckIn.__table__  # type: ignore[attr-defined]
_OUTBOX_STATUSES: Final = ("pending", "claimed", "sent", "failed", "dead", "cancelled")
_SCRAPE_DATABASE_TIMEOUT_SECONDS: Final = 2.0

Probe = Callable[[AsyncConnection, datetime], Awaitable[float | None]]


@dataclass(frozen=True)
class _RegisteredProbe:
    gauge: Gauge
    probe: Probe


_probes: dict[str, _RegisteredProbe] = {}


def count_alert(kind: str, severity: str) -> None:
    """Count one alert raised (call after its transaction commits). Kind and severity only."""
    ALERTS.labels(kind=kind, severity=severity).inc()


def register_probe(name: str, documentation: str, probe: Probe) -> None:
    """Add a gauge computed from the database at each scrape (e.g. check-in lag).

    ``probe(connection, now)`` runs in a read-only connection and returns the value, or None for
    "no data" (exported as NaN). It must be cheap (an indexed aggregate) and return no patient
    data. Registering the same name again replaces the probe (module reloads in tests).
    """
    existing = _probes.get(name)
    gauge = (
        existing.gauge if existing is not None else Gauge(name, documentation, registry=REGISTRY)
    )
    _probes[name] = _RegisteredProbe(gauge=gauge, probe=probe)


def unregister_probe(name: str) -> None:
    """Remove a probe and its gauge (tests; an area that is switched off)."""
    entry = _probes.pop(name, None)
    if entry is not None:
        REGISTRY.unregister(entry.gauge)


def _outcome(status: int) -> str:
    if status < 400:
        return "accepted"
    return "rejected" if status < 500 else "failed"


def _status_of(error: BaseException) -> int:
    # Errors raised by inner middleware (access control) become responses further out; their
    # status is on the exception (DomainError and Litestar's HTTPException both carry one).
    status = getattr(error, "status_code", 500)
    return status if isinstance(status, int) else 500


class HttpMetricsMiddleware(ASGIMiddleware):
    """Times every routed request and counts submissions (outermost, so it sees every status).

    Written here rather than using ``litestar.plugins.prometheus``: that middleware builds a
    Request per call, uses the global registry and records 200 for an exception raised by an
    inner middleware (our 401/403 from access control).
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, send_recording)
        except BaseException as error:
            status = _status_of(error)
            raise
        finally:
            route = scope.get("path_template") or "unmatched"
            HTTP_REQUEST_DURATION.labels(
                method=scope.get("method", ""), route=route, status=str(status)
            ).observe(time.perf_counter() - started)
            if route in SUBMISSION_ROUTES:
                SUBMISSIONS.labels(route=route, outcome=_outcome(status)).inc()


async def check_in_lag_seconds(connection: AsyncConnection, now: datetime) -> float:
    """Seconds the oldest due check-in (window still open, not yet sent) has waited; 0 if none.

    A claimed check-in counts until it is sent: a claim that dies waits for its lease to expire.
    """
    # Walks the claim loop's (status, due_at) index in due order and stops at the first open one.
    oldest = await connection.scalar(
        select(_CHECK_INS.c.due_at)
        .where(
            _CHECK_INS.c.status.in_(("pending", "claimed")),
            _CHECK_INS.c.due_at <= now,
            _CHECK_INS.c.closes_at > now,
        )
        .order_by(_CHECK_INS.c.due_at)
        .limit(1)
    )
    if not isinstance(oldest, datetime):
        return 0.0
    oldest_utc = oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest_utc).total_seconds())


async def _run_probe(
    connection: AsyncConnection, name: str, entry: _RegisteredProbe, now: datetime
) -> float | None:
    # One broken probe must not blank the others (or the outbox gauges read before it).
    try:
        return await entry.probe(connection, now)
    except Exception as error:
        logger.warning(
            "metrics probe failed",
            extra={"fields": {"probe": name, "error_type": type(error).__name__}},
        )
        await connection.rollback()  # PostgreSQL refuses further statements in a failed one
        return None


async def _refresh_database_gauges(runtime: "Runtime") -> None:
    engine = runtime.engine
    if engine is None:
        DATABASE_UP.set(0)
        return
    now = runtime.clock.now()
    try:
        async with asyncio.timeout(_SCRAPE_DATABASE_TIMEOUT_SECONDS), engine.connect() as conn:
            counts = await outbox.status_counts(conn)
            oldest = await outbox.oldest_pending(conn, now=now)
            check_in_lag = await check_in_lag_seconds(conn, now)
            probed = {
                name: await _run_probe(conn, name, entry, now) for name, entry in _probes.items()
            }
    except Exception as error:  # a scrape must answer even when the database does not
        logger.warning(
            "metrics could not read the database",
            extra={"fields": {"error_type": type(error).__name__}},
        )
        DATABASE_UP.set(0)
        return
    DATABASE_UP.set(1)
    for status in {*_OUTBOX_STATUSES, *counts}:
        OUTBOX_MESSAGES.labels(status=status).set(counts.get(status, 0))
    OUTBOX_DEAD_LETTERS.set(counts.get("dead", 0))
    if oldest is None:
        OUTBOX_OLDEST_DUE_AGE.set(0)
    else:
        oldest_utc = oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=UTC)
        OUTBOX_OLDEST_DUE_AGE.set(max(0.0, (now - oldest_utc).total_seconds()))
    CHECK_IN_LAG.set(check_in_lag)
    for name, value in probed.items():
        _probes[name].gauge.set(float("nan") if value is None else value)


def _refresh_process_gauges(runtime: "Runtime") -> None:
    TIMERS_RUNNING.set(1 if runtime.timers.running else 0)
    for timer, state in runtime.timers.health().items():
        TIMER_HEALTHY.labels(timer=timer).set(1 if state in ("ok", "starting") else 0)
    if runtime.instance_id is not None:
        BUILD_INFO.labels(version=VERSION, instance=runtime.instance_id).set(1)


async def render_metrics(runtime: "Runtime") -> bytes:
    """Refresh the gauges and render the registry in the Prometheus text format."""
    _refresh_process_gauges(runtime)
    await _refresh_database_gauges(runtime)
    return generate_latest(REGISTRY)


@get(
    "/metrics",
    opt={"public": True},  # scrapers carry no token; operational counts only (module docstring)
    include_in_schema=False,
    cache=False,
)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    runtime: Runtime = request.app.state.runtime
    return Response(await render_metrics(runtime), media_type=CONTENT_TYPE_LATEST)
