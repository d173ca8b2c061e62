"""HTTP bodies of the export routes (msgspec; no PHI in any of them)."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

FileFormat = Literal["parquet", "csv", "fhir_ndjson"]
ArchiveFormat = Literal["zip", "tar"]
JobState = Literal["queued", "running", "done", "failed", "refused", "expired", "downloaded"]
StudyName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
"""A slug: it becomes the bundle's name, so it must not be free text that could carry PHI."""


class ExportRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    study_id: uuid.UUID | None = None
    """None: the caller's own clinic, with study ids new to this export."""
    formats: Annotated[tuple[FileFormat, ...], msgspec.Meta(min_length=1, max_length=3)] = (
        "parquet",
        "csv",
    )
    archive: ArchiveFormat = "zip"
    k: Annotated[int, msgspec.Meta(ge=5, le=100)] = 5
    """k-anonymity to reach; never below the default of 5."""
    date_shift: bool = False
    """Per-patient shifted dates (a limited data set): a clinic admin's request only."""
    include_free_text: bool = False
    """Patients' free text (needs review before it leaves): a clinic admin's request only."""


class ExportView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    state: JobState
    percent: int
    rows: int
    study_id: uuid.UUID | None
    formats: tuple[str, ...]
    archive: str
    classification: str
    k_required: int
    k_achieved: int | None
    refusal_reason: str | None
    """Why the k-anonymity gate refused (counts only), when state is refused."""
    failure: str | None
    sha256: str | None
    size_bytes: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    downloaded_at: datetime | None


class NewStudy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: StudyName
    stable_ids: bool = False
    """True: the same patient has the same study id in every export of this study."""


class StudyInvitation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    clinic_id: uuid.UUID
    """The clinic invited to join the study (its admin then joins, or declines)."""


class StudyView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str
    stable_ids: bool
    clinic_ids: tuple[uuid.UUID, ...]
    """The member clinics: each consented to research use of its data in the study."""
    invited_clinic_ids: tuple[uuid.UUID, ...] | None = None
    """Pending invitations, shown to members only (None for an invited clinic's staff)."""
