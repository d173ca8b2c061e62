from datetime import datetime

from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class LoginFailureCounter(SQLModel, table=True):
    """Recent failed sign-in attempts per account or per source, shared by every instance.

    Kept in the database, incremented with one atomic UPSERT, because a per-process limiter lets N
    instances allow N times the limit (engineering-notes §B.1, litestar-org/litestar#4700).
    ``key`` is ``"<kind>:<hex HMAC>"``: neither the email nor the client address is stored.
    """

    __tablename__ = "login_failure_counters"

    key: str = Field(primary_key=True, max_length=80)
    failures: int
    first_failure_at: datetime = Field(sa_type=UTCDateTime)
    last_failure_at: datetime = Field(sa_type=UTCDateTime)
