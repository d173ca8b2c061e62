"""What a running app holds: settings, database, timers, keys, clock. Built by the lifespan."""

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.config import Settings
from backend.crypto.blind_index import BlindIndexer
from backend.crypto.kek import KekProvider
from backend.domain.outbox.dispatcher import Dispatcher
from backend.domain.outbox.enqueue import RecipientType
from backend.domain.outbox.recipients import ChainResolver, DirectResolver
from backend.keyring.secrets import ServiceSecrets
from backend.keyring.service import Keyring
from backend.lib.clock import Clock
from backend.timers import Timers
from notifications.registry import NotificationsConfig


def _default_recipients() -> ChainResolver:
    direct = DirectResolver(frozenset({RecipientType.WEBHOOK, RecipientType.CONSOLE}))
    return ChainResolver({RecipientType.WEBHOOK: direct, RecipientType.CONSOLE: direct})


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    kek: KekProvider
    secrets: ServiceSecrets
    keyring: Keyring
    blind_indexes: BlindIndexer
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    # Domain areas register how to turn their recipient references into addresses
    # (e.g. identity: a device id into its decrypted push token).
    recipients: ChainResolver = field(default_factory=_default_recipients)
    timers: Timers = field(default_factory=Timers)
    dispatcher: Dispatcher | None = None
    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    instance_id: str | None = None

    def require_engine(self) -> AsyncEngine:
        if self.engine is None:
            msg = "the database engine is not started (app lifespan not running)"
            raise RuntimeError(msg)
        return self.engine

    def require_sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self.sessionmaker is None:
            msg = "the database is not started (app lifespan not running)"
            raise RuntimeError(msg)
        return self.sessionmaker
