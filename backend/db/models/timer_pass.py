from datetime import datetime

from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class TimerPass(SQLModel, table=True):
    """When a cluster-wide timer pass is next due, and which instance ran the last one.

    Some passes look at every patient (alert evaluation): each replica running them would do the
    same work once per replica. The first instance whose timer fires after ``due_at`` moves it on
    (by most of an interval, `timer_passes.EARLY_FRACTION`) in a conditional update and runs the
    pass; the others see no row changed and skip it. A pass is idempotent, so one lost to a crash
    is simply the next one.
    """

    __tablename__ = "timer_passes"

    name: str = Field(primary_key=True, max_length=64)
    due_at: datetime = Field(sa_type=UTCDateTime)
    holder: str = Field(max_length=128)
    """The instance (``service_instances.id``, else its configured name) that claimed the last
    pass."""
    claimed_at: datetime = Field(sa_type=UTCDateTime)
