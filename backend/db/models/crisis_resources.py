import uuid
from datetime import datetime

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class ClinicCrisisResources(SQLModel, table=True):
    """What a clinic's patients see on the crisis screen, per locale (clinical-spec §5.3 rule 2).

    Clinic configuration, not patient data, so nothing here is encrypted. ``locale`` is a
    normalised BCP 47 tag ("en-GB", "es") or "default" (the clinic's catch-all); a patient's
    locale without a clinic row falls back to the shipped per-region defaults
    (`backend/domain/safety/crisis_resources.json`). ``version`` counts saves, so a screen says
    which content it showed.
    """

    __tablename__ = "clinic_crisis_resources"
    __table_args__ = (
        UniqueConstraint("clinic_id", "locale", name="uq_clinic_crisis_resources_locale"),
    )

    id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", index=True)
    locale: str = Field(max_length=16)
    headline: str = Field(max_length=300)
    resources: list[dict[str, str]] = Field(sa_type=JSON)
    """[{"label": ..., "phone": ...}], in the order the screen lists them."""
    clinic_contact: str | None = Field(default=None, max_length=200)
    version: int = Field(default=1)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    updated_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")
