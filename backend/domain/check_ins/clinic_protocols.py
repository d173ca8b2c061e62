"""Which protocol a clinic's course follows: the shipped default of its modality, or the clinic's
override stored in ``clinic_protocol_overrides`` (one JSON document per clinic and modality, the
`ProtocolOverride` format of `protocols.py`).

Overrides are a table rather than files so a clinic admin can change one without a deploy; the
document is checked (`apply_override`) before it is stored, so a bad one is refused at once. A
course records the protocol id and version it started with; a later override applies to courses
started after it, and a course whose stored protocol is no longer available is an error to fix,
never silently re-timed under another protocol.
"""

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.models.treatment import ClinicProtocolOverride
from backend.domain.check_ins.protocols import (
    Modality,
    Protocol,
    ProtocolError,
    apply_override,
    decode_override,
    default_protocol,
)
from backend.lib.errors import Conflict, InvalidInput

TABLE = ClinicProtocolOverride.__table__  # type: ignore[attr-defined]
_c = TABLE.c


async def clinic_protocol(
    connection: AsyncConnection, clinic_id: uuid.UUID, modality: Modality
) -> Protocol:
    """The protocol new courses of this clinic and modality follow."""
    document = await connection.scalar(
        select(_c.document).where(_c.clinic_id == clinic_id, _c.modality == modality)
    )
    base = default_protocol(modality)
    if document is None:
        return base
    return apply_override(base, decode_override(bytes(document), f"clinic {clinic_id}"))


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
    raise Conflict(
        "the course's check-in protocol is no longer available; restore it or end the course"
    )


async def save_override(
    connection: AsyncConnection,
    *,
    clinic_id: uuid.UUID,
    modality: Modality,
    document: bytes,
    staff_id: uuid.UUID | None,
    now: datetime,
) -> Protocol:
    """Check and store a clinic's override; returns the protocol it produces."""
    try:
        protocol = apply_override(default_protocol(modality), decode_override(document, "override"))
    except ProtocolError as error:
        raise InvalidInput(str(error)) from None
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    values = {"document": document, "updated_by": staff_id, "updated_at": now}
    await connection.execute(
        insert(TABLE)
        .values(clinic_id=clinic_id, modality=modality, **values)
        .on_conflict_do_update(index_elements=["clinic_id", "modality"], set_=values)
    )
    return protocol
