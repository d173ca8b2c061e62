"""The audit hash chain: a canonical encoding of one event and the hash that links it to the last.

Pure: no database. ``backend.audit.service`` stores what this computes and ``verify`` recomputes it.

``hash = SHA-256("interlude-audit-v1" ‖ field₁ ‖ … ‖ fieldₙ ‖ prev_hash)`` where each field is a
presence byte (0 = NULL, 1 = present) followed, if present, by a 4-byte big-endian length and the
UTF-8 bytes: an injective encoding (the same idea as Tink's structured-data serialisation,
engineering-notes §D.3), so no two different events share an input. The hash covers the event id,
chain and sequence number, so moving a row to another position or chain breaks it as surely as
editing a field does.
"""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = ["GENESIS_HASH", "SYSTEM_CHAIN", "ChainedEvent", "chain_for", "event_hash"]

GENESIS_HASH: Final = "0" * 64
"""``prev_hash`` of the first event of every chain."""

SYSTEM_CHAIN: Final = "system"
"""The chain for events outside any clinic (operator actions, failed logins of unknown users)."""

_DOMAIN: Final = b"interlude-audit-v1"


def chain_for(clinic_id: uuid.UUID | None) -> str:
    """One chain per clinic, so clinics do not queue behind each other's appends."""
    return SYSTEM_CHAIN if clinic_id is None else f"clinic:{clinic_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainedEvent:
    """Every stored field of an audit row except its own hash."""

    id: uuid.UUID
    chain: str
    seq: int
    at: datetime
    actor_id: str | None
    actor_role: str
    action: str
    resource_type: str
    resource_id: str | None
    clinic_id: uuid.UUID | None
    purpose: str
    request_id: str | None
    outcome: str
    prev_hash: str


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    # Microseconds: what both SQLite and PostgreSQL store, so the stored row rehashes identically.
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(event: ChainedEvent) -> str:
    """The hex SHA-256 that the row stores in ``hash`` and the next row in ``prev_hash``."""
    digest = hashlib.sha256(_DOMAIN)
    fields: tuple[str | None, ...] = (
        str(event.id),
        event.chain,
        str(event.seq),
        _timestamp(event.at),
        event.actor_id,
        event.actor_role,
        event.action,
        event.resource_type,
        event.resource_id,
        None if event.clinic_id is None else str(event.clinic_id),
        event.purpose,
        event.request_id,
        event.outcome,
        event.prev_hash,
    )
    for value in fields:
        if value is None:
            digest.update(b"\x00")
            continue
        encoded = value.encode("utf-8")
        digest.update(b"\x01" + len(encoded).to_bytes(4, "big") + encoded)
    return digest.hexdigest()
