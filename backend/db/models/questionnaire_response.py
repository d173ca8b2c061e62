import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class QuestionnaireResponse(SQLModel, table=True):
    """One submitted questionnaire: answers and score, encrypted under the patient's data key.

    Plain columns are what routing, scheduling and idempotency need and nothing more (DESIGN §5):
    ids, instrument id and version, timestamps, the late flag. Answers (including any free text)
    and the score (total, band, safety flags) exist only as ciphertext whose associated data binds
    this table, the column, the row id and the patient, so a ciphertext cannot be moved elsewhere.

    ``(patient_id, idempotency_key)`` is unique: a phone retrying a submission on a bad network
    stores it once; the retry gets the first result back.
    """

    __tablename__ = "questionnaire_responses"
    __table_args__ = (
        UniqueConstraint("patient_id", "idempotency_key", name="uq_responses_patient_idempotency"),
        Index("ix_responses_patient_trajectory", "patient_id", "trajectory_key", "authored_at"),
        # Alert evaluation reads the answers to one instrument just before a submission.
        Index("ix_responses_patient_instrument", "patient_id", "instrument_id", "authored_at"),
        # A patient's responses in time order: history pages, the timer's whole-history read, a
        # submission's course scope and the export's pages (keyset on authored_at, id).
        Index("ix_responses_patient_authored", "patient_id", "authored_at", "id"),
        Index("ix_responses_check_in", "check_in_id"),
        CheckConstraint("source IN ('app', 'fhir', 'clinician')", name="ck_responses_source"),
    )

    id: uuid.UUID = Field(primary_key=True)  # UUIDv7, made by the app (bound into the AAD)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", index=True)
    patient_id: uuid.UUID = Field(foreign_key="patients.id")
    check_in_id: uuid.UUID | None = Field(default=None)
    idempotency_key: str = Field(max_length=128)
    instrument_id: str = Field(max_length=64)
    instrument_version: str = Field(max_length=32)
    # Scores on one trajectory are comparable; short- and long-recall instruments never share one.
    trajectory_key: str = Field(max_length=64)
    scorer_version: str = Field(max_length=32)
    source: str = Field(max_length=16)
    # The client's clock (when the patient answered) beside ours (when it arrived).
    authored_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    late: bool = Field(default=False)
    answers_ct: bytes = Field(sa_type=LargeBinary)
    score_ct: bytes = Field(sa_type=LargeBinary)
