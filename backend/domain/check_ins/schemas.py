"""Bodies of the clinic check-in protocol routes (msgspec). The protocol and override documents
themselves keep their own camelCase format (`protocols.py`)."""

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

from backend.domain.check_ins.protocols import Modality


class ProtocolRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: str


class ClinicProtocolView(msgspec.Struct, frozen=True, kw_only=True):
    """The protocol new courses of one modality follow in this clinic, and where it comes from.
    Courses under way keep the protocol they started with (``treatment_courses.protocol_*``)."""

    modality: Modality
    source: Literal["default", "override"]
    effective: ProtocolRef
    shipped_default: ProtocolRef
    override: dict[str, Any] | None
    """The clinic's override document as saved (None: the shipped default is in force)."""
    override_saved_at: datetime | None
    override_saved_by: uuid.UUID | None
    protocol: dict[str, Any]
    """The effective protocol in full (durations in ISO 8601)."""


class ClinicProtocols(msgspec.Struct, frozen=True, kw_only=True):
    protocols: list[ClinicProtocolView]
