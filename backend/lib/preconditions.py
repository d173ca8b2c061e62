"""Conditional writes (RFC 9110 §13.1.1 ``If-Match``) for routes that replace a shared object.

A PUT that replaces a whole object (the clinic's on-call list, its alert parameters, a check-in
protocol...) silently loses the edit of whoever saved first when two people edit the same copy.
Each such route serves an entity tag of what a GET shows (`entity_tag`: a hash of the JSON
representation) and accepts it back as ``If-Match``: when the object changed since it was read,
nothing is written and the answer is 412 (`PreconditionFailed`), so the caller reads it again.
Without ``If-Match`` (or with ``*``) the write stays unconditional, so existing clients work.

The check and the write must be atomic: the service reads the current state under a row lock
(`lock_clinic` for clinic-wide objects, `lock_row` for one owned by a patient or a staff member;
PostgreSQL: ``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already serialises writers) before it
compares, and writes in the same transaction.
"""

import hashlib
import uuid
from typing import Any, Final, cast

import msgspec
from sqlalchemy import Table, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.clinic import Clinic
from backend.lib.errors import InvalidInput, PreconditionFailed, PreconditionRequired

__all__ = [
    "IF_MATCH_DESCRIPTION",
    "entity_tag",
    "etag_headers",
    "if_match_versions",
    "lock_clinic",
    "lock_row",
    "require_current",
    "require_version",
    "required_if_match_versions",
    "tag_headers",
]

_CLINICS: Final = cast(Table, Clinic.__table__)  # type: ignore[attr-defined]

IF_MATCH_DESCRIPTION = (
    "Send the `ETag` of the GET (or of this route's last answer) as `If-Match`: if someone "
    "changed it since, nothing is written and the answer is 412, so a change is never saved "
    "over another person's. Without `If-Match` the write is unconditional."
)


def if_match_versions(header: str | None) -> frozenset[str] | None:
    """The versions an ``If-Match`` header names; None for no header or ``*`` (any version).

    Only strong tags can match (§13.1.1), so a weak one (``W/"..."``) names nothing; a header
    that is neither ``*`` nor a list of quoted tags is refused (422), not ignored."""
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            continue
        if len(tag) < 2 or not (tag.startswith('"') and tag.endswith('"')):
            raise InvalidInput('If-Match must be "*" or quoted entity tags, e.g. "3f2a..."')
        versions.add(tag[1:-1])
    return frozenset(versions)


def required_if_match_versions(header: str | None) -> frozenset[str]:
    """`if_match_versions` for a write that is never unconditional (a patient's consent): without
    ``If-Match``, or with ``*``, nothing is written and the answer is 428, so a change is always
    made from a copy the caller has read and can never undo one saved meanwhile."""
    versions = if_match_versions(header)
    if versions is None:
        raise PreconditionRequired(
            'send the ETag of a GET as If-Match (an entity tag, not "*"): this change is '
            "only made from the version it was read from"
        )
    return versions


def entity_tag(representation: Any) -> str:
    """A strong version of what the caller sees: a hash of the representation's JSON, so it
    changes exactly when the answer of a GET would."""
    return hashlib.sha256(msgspec.json.encode(representation)).hexdigest()[:32]


def tag_headers(version: str) -> dict[str, str]:
    """The ``ETag`` header naming ``version`` (an `entity_tag`, or an object's own version)."""
    return {"ETag": f'"{version}"'}


def etag_headers(representation: Any) -> dict[str, str]:
    return tag_headers(entity_tag(representation))


def require_version(if_match: frozenset[str] | None, version: str, what: str) -> None:
    """PreconditionFailed unless ``if_match`` names ``version`` (None: any). ``what`` names the
    object in the problem's detail (never a value of it)."""
    if if_match is not None and version not in if_match:
        raise PreconditionFailed(
            f"{what} changed since it was read; read it again and re-apply the change"
        )


def require_current(if_match: frozenset[str] | None, representation: Any, what: str) -> None:
    """`require_version` with the current representation's `entity_tag`."""
    if if_match is not None:
        require_version(if_match, entity_tag(representation), what)


async def lock_row(session: AsyncSession, table: Table, row_id: uuid.UUID) -> None:
    """Hold one row (by its ``id``) until the transaction ends (PostgreSQL), so the object it
    owns, read next, cannot change before this transaction writes it. On SQLite the statement
    is a plain read: its transactions begin IMMEDIATE, one writer at a time.

    FOR NO KEY UPDATE, not FOR UPDATE: it excludes every other holder and writer of the row just
    the same, but not the KEY SHARE lock a foreign-key check takes on it. With FOR UPDATE, a
    schedule change holding the patient's row and waiting for a check-in the timer had claimed
    deadlocked with the timer, whose next write to that check-in re-checks its patient_id
    foreign key (PostgreSQL re-checks a row its own transaction wrote)."""
    connection = await session.connection()
    await connection.execute(
        select(table.c.id).where(table.c.id == row_id).with_for_update(key_share=True)
    )


async def lock_clinic(session: AsyncSession, clinic_id: uuid.UUID) -> None:
    """`lock_row` on the clinic: for clinic-wide objects (on-call list, parameters...)."""
    await lock_row(session, _CLINICS, clinic_id)
