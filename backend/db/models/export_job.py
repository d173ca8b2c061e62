import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class ExportStudy(SQLModel, table=True):
    """A research study: a name, the clinics that consented to research use of their patients'
    data for it (``export_study_clinics``), and whether its study ids are stable across exports.

    A stable-id study keeps one pseudonym key for all its exports (engineering-notes §E.3), so a
    researcher can link this month's export to last month's. The key exists only as ciphertext
    under the study's own data key (keyring owner = the study id); destroying that data key ends
    the linkability for good.
    """

    __tablename__ = "export_studies"

    id: uuid.UUID = Field(primary_key=True)
    name: str = Field(max_length=120, unique=True)
    stable_ids: bool = Field(default=False)
    pseudonym_key_ct: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_by: uuid.UUID | None = Field(default=None)
    created_at: datetime = Field(sa_type=UTCDateTime)


class ExportStudyClinic(SQLModel, table=True):
    """A clinic's consent to research use of its (consenting) patients' data in one study."""

    __tablename__ = "export_study_clinics"

    study_id: uuid.UUID = Field(foreign_key="export_studies.id", primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", primary_key=True, index=True)
    consented_by: uuid.UUID | None = Field(default=None)
    consented_at: datetime = Field(sa_type=UTCDateTime)


class ExportStudyInvitation(SQLModel, table=True):
    """A member clinic's pending invitation for another clinic to join a study.

    Joining a study hands the joining clinic's researchers the members' de-identified data, so
    the members decide who joins: a clinic joins only with an invitation, which joining consumes.
    Only pending invitations are rows here (joined, declined and revoked ones are deleted); the
    audit log keeps the history.
    """

    __tablename__ = "export_study_invitations"

    study_id: uuid.UUID = Field(foreign_key="export_studies.id", primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", primary_key=True, index=True)
    invited_by: uuid.UUID | None = Field(default=None)
    invited_at: datetime = Field(sa_type=UTCDateTime)


class ExportJob(SQLModel, table=True):
    """One requested research export, run in the background by whichever instance claims it.

    The claim is a lease (``claimed_by``/``lease_until``), as in the outbox: a job whose instance
    died is claimed again when the lease runs out and starts over in a fresh temporary
    directory; the final archive appears under ``result_path`` only by an atomic rename, so a
    half-written export is never handed out. ``clinic_ids`` freezes the cohort definition at
    request time (JSON list of clinic ids), except that a clinic withdrawing from the study takes
    itself out of the jobs not yet written. The per-export pseudonym key lives only as ciphertext
    under the job's own data key (keyring owner = the job id), destroyed when the job ends.
    Nothing here is PHI: ids, counts, states and a refusal reason that names counts only.
    """

    __tablename__ = "export_jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed', 'refused', 'expired', 'downloaded')",
            name="ck_export_jobs_state",
        ),
        CheckConstraint("archive IN ('zip', 'tar')", name="ck_export_jobs_archive"),
        Index("ix_export_jobs_due", "state", "created_at"),
        UniqueConstraint("result_path", name="uq_export_jobs_result_path"),
    )

    id: uuid.UUID = Field(primary_key=True)
    requester_id: uuid.UUID | None = Field(default=None, index=True)
    requester_role: str = Field(max_length=16)
    requester_clinic_id: uuid.UUID | None = Field(default=None, foreign_key="clinics.id")
    study_id: uuid.UUID | None = Field(default=None, foreign_key="export_studies.id")
    clinic_ids: str = Field(max_length=4000)
    profile: str = Field(max_length=4000)
    formats: str = Field(max_length=200)
    archive: str = Field(default="zip", max_length=8)
    k_required: int = Field(default=5)
    state: str = Field(default="queued", max_length=12)
    attempts: int = Field(default=0)
    claimed_by: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    progress_rows: int = Field(default=0)
    progress_percent: int = Field(default=0)
    refusal_reason: str | None = Field(default=None, max_length=500)
    failure: str | None = Field(default=None, max_length=64)
    k_achieved: int | None = Field(default=None)
    pseudonym_key_ct: bytes | None = Field(default=None, sa_type=LargeBinary)
    result_path: str | None = Field(default=None, max_length=200)
    checksum: str | None = Field(default=None, max_length=64)
    size_bytes: int | None = Field(default=None)
    created_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    downloaded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
