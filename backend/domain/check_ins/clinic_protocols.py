"""Which protocol a clinic's course follows: the shipped default of its modality, or the clinic's
override stored in ``clinic_protocol_overrides`` (one JSON document per clinic and modality, the
`ProtocolOverride` format of `protocols.py`).

Overrides are a table rather than files so a clinic admin can change one without a deploy; the
document is checked (`apply_override`) before it is stored, so a bad one is refused at once. A
course records the protocol id and version it started with; a later override applies to courses
started after it. Every saved override is also kept in ``clinic_protocol_versions`` (immutable:
a version, once saved, always means the same document), so a course started under an earlier
override keeps re-planning with it after the clinic moves on; an id and version found nowhere is
an error to fix, never silently re-timed under another protocol.
"""

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.treatment import ClinicProtocolOverride, ClinicProtocolVersion
from backend.db.upsert import dialect_insert
from backend.domain.check_ins.protocols import (
    Modality,
    Protocol,
    ProtocolError,
    apply_override,
    decode_override,
    default_protocol,
)
from backend.domain.check_ins.schemas import ClinicProtocolView, ProtocolRef
from backend.lib.errors import Conflict, FieldProblem, InvalidInput
from backend.lib.ids import uuid7
from backend.lib.preconditions import lock_clinic, require_current

TABLE = ClinicProtocolOverride.__table__  # type: ignore[attr-defined]
VERSIONS = ClinicProtocolVersion.__table__  # type: ignore[attr-defined]
_c = TABLE.c
_v = VERSIONS.c


class StoredOverride(msgspec.Struct, frozen=True, kw_only=True):
    """The override in force for a clinic and modality, as saved."""

    document: bytes
    updated_by: uuid.UUID | None
    updated_at: datetime


async def stored_override(
    connection: AsyncConnection, clinic_id: uuid.UUID, modality: Modality
) -> StoredOverride | None:
    row = (
        await connection.execute(
            select(_c.document, _c.updated_by, _c.updated_at).where(
                _c.clinic_id == clinic_id, _c.modality == modality
            )
        )
    ).first()
    if row is None:
        return None
    return StoredOverride(
        document=bytes(row.document), updated_by=row.updated_by, updated_at=row.updated_at
    )


def protocol_of(
    clinic_id: uuid.UUID, modality: Modality, stored: StoredOverride | None
) -> Protocol:
    """The protocol new courses follow, given the clinic's stored override (if any)."""
    base = default_protocol(modality)
    if stored is None:
        return base
    return apply_override(base, decode_override(stored.document, f"clinic {clinic_id}"))


async def clinic_protocol(
    connection: AsyncConnection, clinic_id: uuid.UUID, modality: Modality
) -> Protocol:
    """The protocol new courses of this clinic and modality follow."""
    return protocol_of(clinic_id, modality, await stored_override(connection, clinic_id, modality))


async def protocol_view(
    connection: AsyncConnection, clinic_id: uuid.UUID, modality: Modality
) -> ClinicProtocolView:
    """What a GET of the modality's protocol shows (its ETag hashes this)."""
    stored = await stored_override(connection, clinic_id, modality)
    return view_of(modality, stored, protocol_of(clinic_id, modality, stored))


def view_of(
    modality: Modality, stored: StoredOverride | None, protocol: Protocol
) -> ClinicProtocolView:
    """`protocol_view` from what the caller read already (``protocol``: `protocol_of` it)."""
    shipped = default_protocol(modality)
    return ClinicProtocolView(
        modality=modality,
        source="default" if stored is None else "override",
        effective=ProtocolRef(id=protocol.id, version=protocol.version),
        shipped_default=ProtocolRef(id=shipped.id, version=shipped.version),
        override=None if stored is None else msgspec.json.decode(stored.document),
        override_saved_at=None if stored is None else stored.updated_at,
        override_saved_by=None if stored is None else stored.updated_by,
        protocol=msgspec.to_builtins(protocol),
    )


async def course_protocol(
    connection: AsyncConnection,
    clinic_id: uuid.UUID,
    modality: Modality,
    protocol_id: str,
    protocol_version: str,
) -> Protocol:
    """The protocol a course started with."""
    for candidate in (
        default_protocol(modality),
        await clinic_protocol(connection, clinic_id, modality),
    ):
        if (candidate.id, candidate.version) == (protocol_id, protocol_version):
            return candidate
    document = await connection.scalar(
        select(_v.document).where(
            _v.clinic_id == clinic_id,
            _v.modality == modality,
            _v.protocol_id == protocol_id,
            _v.protocol_version == protocol_version,
        )
    )
    if document is not None:
        try:
            return apply_override(
                default_protocol(modality),
                decode_override(str(document).encode(), f"clinic {clinic_id}"),
            )
        except ProtocolError:
            # Saved against an earlier shipped default that a release replaced: fall through.
            pass
    raise Conflict(
        "the course's check-in protocol is no longer available; restore it or end the course"
    )


def checked_override(modality: Modality, document: bytes) -> Protocol:
    """The protocol an override document produces for this modality, or InvalidInput saying why
    (shape, unknown keys, the base it extends, clinical consistency: `protocol_problems`)."""
    base = default_protocol(modality)
    try:
        protocol = apply_override(base, decode_override(document, "override"))
    except ProtocolError as error:
        raise InvalidInput(
            "the override is not a valid check-in protocol override",
            errors=[FieldProblem(pointer="", code="invalid_protocol", message=str(error))],
        ) from None
    if protocol.id == base.id:
        # Courses name their protocol by id and version: the shipped default's id must keep
        # meaning the shipped default.
        raise InvalidInput(
            "an override needs its own id, not the shipped default's",
            errors=[FieldProblem(pointer="/id", code="reserved_id", message="give another id")],
        )
    return protocol


async def save_override(
    session: AsyncSession,
    *,
    clinic_id: uuid.UUID,
    modality: Modality,
    document: bytes,
    staff_id: uuid.UUID | None,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> Protocol:
    """Check and store a clinic's override (new courses follow it); returns the protocol it
    produces. Saving the same document again puts that version back in force; another document
    under a version already saved is a Conflict (a version names one document forever).
    PreconditionFailed if ``if_match`` (entity tags of what a GET showed) no longer names the
    modality's protocol view."""
    # Always under the clinic's lock: two unconditional saves must not interleave either.
    await lock_clinic(session, clinic_id)
    connection = await session.connection()
    if if_match is not None:
        current = await protocol_view(connection, clinic_id, modality)
        require_current(if_match, current, "the check-in protocol")
    protocol = checked_override(modality, document)
    canonical = msgspec.json.encode(msgspec.json.decode(document)).decode()
    earlier = await connection.scalar(
        select(_v.document).where(
            _v.clinic_id == clinic_id,
            _v.modality == modality,
            _v.protocol_id == protocol.id,
            _v.protocol_version == protocol.version,
        )
    )
    if earlier is None:
        await connection.execute(
            VERSIONS.insert().values(
                id=uuid7(),
                clinic_id=clinic_id,
                modality=modality,
                protocol_id=protocol.id,
                protocol_version=protocol.version,
                document=canonical,
                saved_by=staff_id,
                saved_at=now,
            )
        )
    elif msgspec.json.decode(str(earlier)) != msgspec.json.decode(canonical):
        raise Conflict(
            f"version {protocol.version} of {protocol.id} was saved before with other content; "
            "give the changed protocol a new version"
        )
    insert = dialect_insert(connection)
    values = {"document": canonical.encode(), "updated_by": staff_id, "updated_at": now}
    await connection.execute(
        insert(TABLE)
        .values(clinic_id=clinic_id, modality=modality, **values)
        .on_conflict_do_update(index_elements=["clinic_id", "modality"], set_=values)
    )
    return protocol


async def remove_override(
    session: AsyncSession,
    *,
    clinic_id: uuid.UUID,
    modality: Modality,
    if_match: frozenset[str] | None = None,
) -> bool:
    """New courses follow the shipped default again; courses under way keep their protocol.
    Returns whether there was an override. PreconditionFailed if ``if_match`` no longer names
    what a GET of the modality's protocol shows."""
    # Under the clinic's lock, as saves are, so a save and a removal apply one after the other.
    await lock_clinic(session, clinic_id)
    connection = await session.connection()
    if if_match is not None:
        current = await protocol_view(connection, clinic_id, modality)
        require_current(if_match, current, "the check-in protocol")
    result = await connection.execute(
        delete(TABLE)
        .where(_c.clinic_id == clinic_id, _c.modality == modality)
        .returning(_c.modality)
    )
    return result.first() is not None
