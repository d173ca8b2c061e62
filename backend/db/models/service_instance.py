from datetime import datetime

from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class ServiceInstance(SQLModel, table=True):
    """One running app process, so operators can see who is alive and timers can name lease owners.

    Each start inserts a row; the heartbeat timer refreshes ``heartbeat_at``; a clean stop sets
    ``stopped_at``. A row whose heartbeat is old and never stopped is a crashed instance.
    """

    __tablename__ = "service_instances"

    id: str = Field(primary_key=True, max_length=32)  # a fresh id per start (uuid hex)
    # INTERLUDE_INSTANCE_ID: stable per pod or host, reused on restart.
    name: str = Field(max_length=128)
    hostname: str = Field(max_length=255)
    pid: int
    version: str = Field(max_length=32)
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
