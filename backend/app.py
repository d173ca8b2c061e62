"""The application factory: routes, lifespan (database, instances, timers), errors, OpenAPI."""

import gc
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from functools import partial

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.types import ControllerRouterHandler
from sqlalchemy.exc import OperationalError, ProgrammingError

from backend.audit.sealer import AuditSealer
from backend.config import DatabaseKind, Settings, load_settings
from backend.crypto.blind_index import BlindIndexer
from backend.dashboard.router import dashboard_template_config
from backend.dashboard.session import DashboardSessionMiddleware
from backend.db.engine import create_engine, create_sessionmaker
from backend.deps import provide_db_session, provide_runtime
from backend.domain.alerts.jobs import register_alert_timers
from backend.domain.check_ins.delivery import CheckInTimers
from backend.domain.check_ins.recipients import DeviceResolver
from backend.domain.exports.jobs import ExportRunner
from backend.domain.fallback.timer import register_fallback_timer
from backend.domain.outbox.dispatcher import Dispatcher
from backend.domain.outbox.enqueue import RecipientType
from backend.domain.outbox.wakeup import PostgresWakeup
from backend.domain.preferences.gate import PreferenceGate
from backend.domain.preferences.recipients import PatientPhoneResolver
from backend.identity.middleware import AccessControlMiddleware
from backend.identity.recipients import StaffEmailResolver
from backend.keyring.secrets import load_service_secrets
from backend.keyring.service import Keyring
from backend.lib.clock import Clock, SystemClock
from backend.lib.logging import configure_logging
from backend.lib.openapi import CorrectedJsonRenderPlugin
from backend.lib.problems import exception_handlers
from backend.lib.request_context import RequestContextMiddleware
from backend.lib.strict_body import strict_json_body
from backend.routes import ROUTE_HANDLERS
from backend.state import Runtime
from backend.system import instances
from backend.system.keys import load_kek
from backend.system.metrics import HttpMetricsMiddleware
from backend.system.notifications import load_notifications_config
from backend.system.single_instance import InstanceLock
from backend.version import VERSION
from notifications.registry import NotifierRegistry

logger = logging.getLogger("interlude.app")

# Bodies of the patient app are small; a larger body is an error or an attack.
MAX_REQUEST_BODY_BYTES = 1_048_576


class DatabaseNotMigrated(RuntimeError):
    message_is_safe_to_log = True

    def __init__(self) -> None:
        super().__init__("the database schema is missing; run `interlude migrate up` first")


def _lifespan(runtime: Runtime) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncGenerator[None, None]:
        settings = runtime.settings
        lock = None
        if settings.sqlite_path is not None:
            lock = InstanceLock(settings.sqlite_path)
            lock.acquire()
        engine = create_engine(settings)
        stack = AsyncExitStack()
        runtime.engine = engine
        runtime.sessionmaker = create_sessionmaker(engine)
        try:
            try:
                runtime.instance_id = await instances.register(
                    engine, settings.instance_id, runtime.clock.now()
                )
            except (OperationalError, ProgrammingError) as error:
                if "service_instances" in str(error.orig):
                    raise DatabaseNotMigrated from None
                raise
            instance_id = runtime.instance_id

            async def heartbeat() -> None:
                await instances.heartbeat(engine, instance_id, runtime.clock.now())

            runtime.timers.every("heartbeat", settings.timer_interval_seconds, heartbeat)
            notifier = NotifierRegistry.from_config(runtime.notifications)
            stack.push_async_callback(notifier.aclose)
            dispatcher = Dispatcher(
                engine,
                notifier,
                runtime.recipients,
                instance=instance_id,
                clock=runtime.clock,
            )
            dispatcher.gate = PreferenceGate()  # patients' channels and quiet hours, staff on call
            runtime.dispatcher = dispatcher
            stack.push_async_callback(dispatcher.close)

            async def drain_outbox() -> None:
                await dispatcher.drain()

            # Polling is the safety net; commits wake the dispatcher at once (deps.py), and on
            # PostgreSQL so does every other instance's commit (LISTEN/NOTIFY).
            runtime.timers.every("outbox", min(settings.timer_interval_seconds, 5.0), drain_outbox)
            register_alert_timers(runtime)
            # Check-ins: devices' push tokens are decrypted at send time; due check-ins are handed
            # to the outbox by every instance (claimed with a lease). A 1 s tick keeps the lag
            # from due time to hand-over within the 2 s p99 target (issue 6, bench/).
            runtime.recipients.register(RecipientType.DEVICE, DeviceResolver(runtime.keyring))
            runtime.recipients.register(RecipientType.STAFF, StaffEmailResolver(runtime.keyring))
            runtime.recipients.register(
                RecipientType.PATIENT_PHONE, PatientPhoneResolver(runtime.keyring)
            )
            check_in_timers = CheckInTimers(
                engine, instance=instance_id, clock=runtime.clock, on_enqueued=dispatcher.wake
            )

            async def run_check_in_timers() -> None:
                await check_in_timers.drain()

            runtime.timers.every(
                "check_ins", min(settings.timer_interval_seconds, 1.0), run_check_in_timers
            )
            # Unconfirmed check-in notifications: re-send, SMS, then a task for staff.
            register_fallback_timer(runtime, engine, instance_id, dispatcher.wake)
            exports = ExportRunner(
                runtime.sessionmaker,
                runtime.keyring,
                runtime.clock,
                data_dir=settings.data_dir,
                instance=instance_id,
            )
            stack.push_async_callback(exports.close)
            runtime.timers.every("exports", settings.timer_interval_seconds, exports.tick)
            runtime.timers.every(
                "exports-cleanup", max(settings.timer_interval_seconds, 60.0), exports.cleanup
            )
            # Requests insert audit events unsealed; every instance seals them into the chains
            # (a chain is locked by one sealer at a time, SKIP LOCKED: instances don't queue).
            audit_sealer = AuditSealer(engine, runtime.clock)
            runtime.timers.every(
                "audit-seal", min(settings.timer_interval_seconds, 1.0), audit_sealer.tick
            )
            if settings.database_kind is DatabaseKind.POSTGRESQL:
                wakeup = PostgresWakeup(settings.database_url, dispatcher.wake)
                wakeup.start()
                stack.push_async_callback(wakeup.stop)
            runtime.timers.start()
            logger.info(
                "started",
                extra={
                    "fields": {
                        "instance": instance_id,
                        "database": settings.database_kind.value,
                        "env": settings.env.value,
                        "version": VERSION,
                    }
                },
            )
            # Objects built at start-up live forever; keeping them out of GC scans cut the p99
            # tail from ~27 ms to ~9 ms on this hardware (shared/ceilings.md §1).
            gc.collect()
            gc.freeze()
            yield
        finally:
            await runtime.timers.shutdown()
            await stack.aclose()
            runtime.dispatcher = None
            if runtime.instance_id is not None:
                try:
                    await instances.mark_stopped(engine, runtime.instance_id, runtime.clock.now())
                except Exception:
                    logger.warning("could not record the stop of this instance", exc_info=True)
            await engine.dispose()
            runtime.engine = None
            runtime.sessionmaker = None
            if lock is not None:
                lock.release()
            logger.info("stopped")

    return lifespan


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    extra_route_handlers: Sequence[ControllerRouterHandler] = (),
) -> Litestar:
    clock = clock or SystemClock()
    kek = load_kek(settings)
    secrets = load_service_secrets(settings)
    # With a key file, `interlude keys rotate-kek` adds a key this process has not loaded; the
    # keyring reloads the file when a re-wrapped data key names it (online rotation).
    kek_loader = None if settings.kek is not None else partial(load_kek, settings)
    runtime = Runtime(
        settings=settings,
        clock=clock,
        kek=kek,
        secrets=secrets,
        keyring=Keyring(kek, clock=clock, kek_loader=kek_loader),
        blind_indexes=BlindIndexer(secrets.blind_index_root),
        notifications=load_notifications_config(settings),
    )
    route_handlers: list[ControllerRouterHandler] = [*ROUTE_HANDLERS, *extra_route_handlers]
    return Litestar(
        route_handlers=route_handlers,
        lifespan=[_lifespan(runtime)],
        state=State({"runtime": runtime}),
        dependencies={
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "db_session": Provide(provide_db_session),
        },
        # Metrics outermost: it must see the status of errors raised by the others.
        # The dashboard's cookie session becomes a bearer token before access control runs.
        middleware=[
            HttpMetricsMiddleware(),
            RequestContextMiddleware(),
            DashboardSessionMiddleware(),
            AccessControlMiddleware(),
        ],
        # Every JSON body is decoded strictly before its handler runs (the framework's own
        # decoding turns "false" into False).
        before_request=strict_json_body,
        template_config=dashboard_template_config(),
        exception_handlers=exception_handlers,
        openapi_config=OpenAPIConfig(
            title="Interlude",
            version=VERSION,
            description="Between-session monitoring for rapid-acting depression treatments.",
            path="/schema",
            # The JSON document is corrected where the generator misdescribes the service.
            render_plugins=[ScalarRenderPlugin(), CorrectedJsonRenderPlugin()],
        ),
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        # Logging is configured once by configure_logging; Litestar must not replace it.
        logging_config=None,
        debug=False,
    )


def create_app_from_env() -> Litestar:
    """Entry point for ASGI servers (``uvicorn --factory backend.app:create_app_from_env``)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
