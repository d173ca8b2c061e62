"""Timers: an APScheduler 3.11 ``AsyncIOScheduler`` per process, used as a trigger only.

Durable work lives in database rows (check-ins, outbox) that every instance claims with a lease;
APScheduler only says "look now" on an interval, with its in-memory job store. Sharing an
APScheduler job store between processes duplicates or loses jobs (APScheduler 3.x FAQ), so we
don't (engineering-notes §C.5).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger("interlude.timers")

TimerJob = Callable[[], Awaitable[None]]


@dataclass
class _TimerState:
    interval_seconds: float
    last_success: float | None = None
    last_failure: float | None = None
    consecutive_failures: int = 0


@dataclass
class Timers:
    scheduler: AsyncIOScheduler = field(default_factory=lambda: AsyncIOScheduler(timezone="UTC"))
    _states: dict[str, _TimerState] = field(default_factory=dict)
    _in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    _started_at: float | None = None

    def every(self, name: str, seconds: float, job: TimerJob) -> None:
        """Run ``job`` every ``seconds`` (never two at once here; late runs coalesce)."""
        state = _TimerState(interval_seconds=seconds)
        self._states[name] = state

        async def run() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await job()
            except Exception:
                state.last_failure = time.monotonic()
                state.consecutive_failures += 1
                logger.exception("timer failed", extra={"fields": {"timer": name}})
            else:
                state.last_success = time.monotonic()
                state.consecutive_failures = 0
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        self.scheduler.add_job(
            run,
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            # Instances started together should not hit the database in lock-step.
            jitter=max(0.0, min(seconds * 0.1, 2.0)) or None,
            next_run_time=None,
            misfire_grace_time=None,
        )

    def start(self) -> None:
        self._started_at = time.monotonic()
        self.scheduler.start()
        # First run right away, so readiness does not wait a whole interval.
        for job in self.scheduler.get_jobs():
            job.modify(next_run_time=datetime.now(UTC))

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop starting runs, let runs in progress finish (so they release their leases), stop."""
        if not self.scheduler.running:
            return
        self.scheduler.pause()
        if self._in_flight:
            _done, pending = await asyncio.wait(set(self._in_flight), timeout=grace_seconds)
            if pending:
                logger.warning(
                    "timers still running at shutdown were cancelled",
                    extra={"fields": {"count": len(pending)}},
                )
        self.scheduler.shutdown(wait=False)
        # AsyncIOScheduler performs the shutdown in a loop callback; let that callback run.
        await asyncio.sleep(0)

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def health(self) -> dict[str, str]:
        """Each timer's state: ok, starting (first run pending), or failing / stalled."""
        now = time.monotonic()
        report: dict[str, str] = {}
        for name, state in self._states.items():
            if state.consecutive_failures >= 3:
                report[name] = "failing"
            elif state.last_success is None:
                # The first run is due at start; one that never completes is stalled.
                since = now - (self._started_at if self._started_at is not None else now)
                report[name] = "stalled" if since > _grace(state) else "starting"
            elif now - state.last_success > _grace(state):
                report[name] = "stalled"
            else:
                report[name] = "ok"
        return report


def _grace(state: _TimerState) -> float:
    return max(3 * state.interval_seconds, 5.0)
