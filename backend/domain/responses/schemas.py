"""Request and response bodies of the submission API (msgspec; camelCase on the wire)."""

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from backend.domain.alerts.candidate import PatientAction
from backend.domain.safety.crisis import CrisisScreen
from questionnaires.answers import Answer

IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
]


class ResponseSubmission(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    instrument_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    instrument_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    answers: Annotated[tuple[Answer, ...], msgspec.Meta(max_length=200)]
    # When the patient answered, by the phone's clock (offline phones submit later).
    authored: datetime | None = None
    check_in_id: uuid.UUID | None = None
    # A client-generated id for this submission; used as the idempotency key when the
    # Idempotency-Key header is absent.
    response_id: uuid.UUID | None = None


class ScoreSummary(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    instrument_id: str
    instrument_version: str
    scorer_version: str
    total: int | None
    band: str | None
    band_label: str | None
    prorated: bool
    missing_items: tuple[str, ...]


class SubmissionResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    # First on purpose: the app shows the crisis screen before any other content (§5.3).
    safety: CrisisScreen | None
    # Suicide items left unanswered: the app asks them once more (§5.3 rule 5); never imputed.
    reask_items: tuple[str, ...]
    response_id: uuid.UUID
    authored_at: datetime
    received_at: datetime
    late: bool
    score: ScoreSummary
    # True when this is the stored result of an earlier submission with the same key.
    replayed: bool
    # What the app must do now, from the alert rules (clinical-spec §5): e.g. show the crisis
    # resources, re-ask a skipped suicide item, advise same-day medical assessment.
    patient_actions: tuple[PatientAction, ...] = ()


class ResponseRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A stored response, decrypted for an authorised reader."""

    response_id: uuid.UUID
    instrument_id: str
    instrument_version: str
    trajectory_key: str
    check_in_id: uuid.UUID | None
    source: str
    authored_at: datetime
    received_at: datetime
    late: bool
    answers: tuple[Answer, ...]
    score: ScoreSummary


class ResponsePage(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    items: list[ResponseRecord]
    next_cursor: str | None


class ScorePoint(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    response_id: uuid.UUID
    authored_at: datetime
    total: int | None
    band: str | None
    prorated: bool
    missing_items: tuple[str, ...]
    """Scored items left unanswered: a total with any is not complete (clinical-spec §2.4), so
    the patient page's B0 is the rules' B0."""
    instrument_version: str


class ScoreSeries(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    trajectory_key: str
    points: list[ScorePoint]
