"""The alert timers: escalation of unacknowledged alerts, and evaluation of time-driven rules.

Both keep their state in rows (`alerts.next_escalation_at`, `alert_occurrences`), so a restart
or a second instance loses and duplicates nothing; the timers only say "look now".
"""

from typing import Final

from backend.domain.alerts.escalation import escalate_due_alerts
from backend.domain.alerts.evaluation import evaluate_recent_patients
from backend.state import Runtime

EVALUATION_MIN_INTERVAL_SECONDS: Final = 60.0
"""Time-driven rules work in hours (re-ask after 60 min, reminders after 6-12 h); decrypting every
recently active patient's history more often than once a minute buys nothing."""


def register_alert_timers(runtime: Runtime) -> None:
    interval = runtime.settings.timer_interval_seconds

    def wake_dispatcher() -> None:
        if runtime.dispatcher is not None:
            runtime.dispatcher.wake()

    async def escalate() -> None:
        if await escalate_due_alerts(runtime.require_sessionmaker(), now=runtime.clock.now()):
            wake_dispatcher()

    async def evaluate() -> None:
        await evaluate_recent_patients(
            runtime.require_sessionmaker(), runtime.keyring, now=runtime.clock.now()
        )
        wake_dispatcher()

    runtime.timers.every("alert-escalation", interval, escalate)
    runtime.timers.every(
        "alert-evaluation", max(interval, EVALUATION_MIN_INTERVAL_SECONDS), evaluate
    )
