"""The alert timers: escalation of unacknowledged alerts, and evaluation of time-driven rules.

Both keep their state in rows (`alerts.next_escalation_at`, `alert_occurrences`), so a restart
or a second instance loses and duplicates nothing; the timers only say "look now". The
evaluation pass reads every recently active patient's history, so with several replicas only
one of them runs each pass (`timer_passes`).
"""

from datetime import timedelta
from typing import Final

from backend.domain.alerts.escalation import escalate_due_alerts
from backend.domain.alerts.evaluation import evaluate_recent_patients
from backend.state import Runtime
from backend.system.timer_passes import claim_pass

EVALUATION_MIN_INTERVAL_SECONDS: Final = 60.0
"""Time-driven rules work in hours (re-ask after 60 min, reminders after 6-12 h); decrypting every
recently active patient's history more often than once a minute buys nothing."""


EVALUATION_TIMER: Final = "alert-evaluation"


def evaluation_interval(runtime: Runtime) -> float:
    return max(runtime.settings.timer_interval_seconds, EVALUATION_MIN_INTERVAL_SECONDS)


async def run_evaluation_pass(runtime: Runtime) -> bool:
    """The time-driven rules for every recently active patient, if no other instance ran them
    within the interval (`claim_pass`: with several replicas the pass runs once, not once per
    replica). Returns whether this instance ran it."""
    now = runtime.clock.now()
    if not await claim_pass(
        runtime.require_engine(),
        EVALUATION_TIMER,
        holder=runtime.instance_id or runtime.settings.instance_id,
        now=now,
        interval=timedelta(seconds=evaluation_interval(runtime)),
    ):
        return False
    await evaluate_recent_patients(runtime.require_sessionmaker(), runtime.keyring, now=now)
    return True


def register_alert_timers(runtime: Runtime) -> None:
    interval = runtime.settings.timer_interval_seconds

    def wake_dispatcher() -> None:
        if runtime.dispatcher is not None:
            runtime.dispatcher.wake()

    async def escalate() -> None:
        if await escalate_due_alerts(runtime.require_sessionmaker(), now=runtime.clock.now()):
            wake_dispatcher()

    async def evaluate() -> None:
        if await run_evaluation_pass(runtime):
            wake_dispatcher()

    runtime.timers.every("alert-escalation", interval, escalate)
    runtime.timers.every(EVALUATION_TIMER, evaluation_interval(runtime), evaluate)
