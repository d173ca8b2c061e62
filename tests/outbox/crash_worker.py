"""A dispatcher in its own process, for the crash test: ``python -m tests.outbox.crash_worker
DATABASE_URL WEBHOOK_URL INSTANCE``. It drains the outbox in a loop until it is killed."""

import asyncio
import sys
import tempfile
from datetime import timedelta

from backend.config import load_settings
from backend.db.engine import create_engine
from backend.domain.outbox.dispatcher import Dispatcher
from backend.domain.outbox.enqueue import RecipientType
from backend.domain.outbox.policy import RetryPolicy
from backend.domain.outbox.recipients import DirectResolver
from backend.lib.clock import SystemClock
from notifications.webhook import WebhookConfig, WebhookEndpoint, WebhookNotifier

SECRET = "crash-test-secret"
LEASE = timedelta(seconds=2)


async def main(database_url: str, webhook_url: str, instance: str) -> None:
    settings = load_settings(
        {"INTERLUDE_DATABASE_URL": database_url, "INTERLUDE_DATA_DIR": tempfile.gettempdir()}
    )
    engine = create_engine(settings)
    notifier = WebhookNotifier(
        WebhookConfig(
            endpoints={"pager": WebhookEndpoint(url=webhook_url, secret=SECRET)},
            timeout_seconds=5.0,
        )
    )
    dispatcher = Dispatcher(
        engine,
        notifier,
        DirectResolver(frozenset({RecipientType.WEBHOOK})),
        instance=instance,
        clock=SystemClock(),
        policy=RetryPolicy(base_seconds=0.2, cap_seconds=1.0),
        batch_size=20,
        lease=LEASE,
        concurrency=8,
    )
    print("ready", flush=True)  # noqa: T201
    while True:
        await dispatcher.drain()
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
