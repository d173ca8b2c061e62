from datetime import datetime
from uuid import UUID

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class Clinic(SQLModel, table=True):
    """A tenant. Every row holding patient data carries its ``clinic_id``; queries are scoped by it.

    The clinic's name is an organisation's name, not PHI, so it is stored in plain text.
    ``totp_required_for_all_staff`` extends the second factor, always required for clinic admins
    and operators, to clinicians and researchers of this clinic (DESIGN §8). ``time_zone`` (an
    IANA name) is the clinic's own: the dashboard shows times and "today" in it.
    """

    __tablename__ = "clinics"

    id: UUID = Field(primary_key=True)
    name: str = Field(max_length=200, unique=True)
    totp_required_for_all_staff: bool = Field(default=False)
    time_zone: str = Field(default="UTC", max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)


class CareTeam(SQLModel, table=True):
    """A group of clinicians inside one clinic who own a set of patients (and their alerts)."""

    __tablename__ = "care_teams"
    __table_args__ = (UniqueConstraint("clinic_id", "name", name="uq_care_teams_clinic_name"),)

    id: UUID = Field(primary_key=True)
    clinic_id: UUID = Field(foreign_key="clinics.id", index=True)
    name: str = Field(max_length=120)
    created_at: datetime = Field(sa_type=UTCDateTime)


class CareTeamMembership(SQLModel, table=True):
    """A staff member's place in a care team. ``clinic_id`` is repeated so scoping needs no join."""

    __tablename__ = "care_team_memberships"

    care_team_id: UUID = Field(foreign_key="care_teams.id", primary_key=True)
    staff_id: UUID = Field(foreign_key="staff.id", primary_key=True, index=True)
    clinic_id: UUID = Field(foreign_key="clinics.id", index=True)
    added_at: datetime = Field(sa_type=UTCDateTime)
