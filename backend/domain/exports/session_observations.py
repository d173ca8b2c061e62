"""A session's clinic-entered observations (`sessions.schemas.Observations`, stored encrypted in
`treatment_sessions.observations_ct`) as export records: one `SessionObservationRecord` per
blood-pressure reading, CADSS-6 total and MOAA/S level, and one `SideEffectRecord` per side
effect.

The stored document has no ids for its parts (a write replaces it whole), so each part's id is
derived from the session id, the part's kind and its position: the same stored observations
give the same ids, hence the same pseudonyms in a study with stable ids. The derived ids are
inputs to the keyed pseudonyms only; they never leave.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence

import msgspec

from backend.domain.exports.records import (
    SessionMeasure,
    SessionObservationRecord,
    SideEffectRecord,
)
from backend.domain.sessions.schemas import Observations
from backend.keyring.service import OwnerKeys

SESSIONS_TABLE = "treatment_sessions"
OBSERVATIONS_COLUMN = "observations_ct"

_decode = msgspec.msgpack.Decoder(Observations).decode


class SealedObservations(msgspec.Struct, frozen=True, kw_only=True):
    """One exported session's observations as stored."""

    session_id: uuid.UUID
    course_id: uuid.UUID
    ciphertext: bytes


def part_id(session_id: uuid.UUID, kind: str, position: int) -> uuid.UUID:
    digest = hashlib.sha256(
        b"interlude|session-observation|v1|"
        + session_id.bytes
        + kind.encode("ascii")
        + position.to_bytes(4, "big")
    ).digest()
    return uuid.UUID(bytes=digest[:16])


def observation_records(
    session_id: uuid.UUID, course_id: uuid.UUID, observations: Observations
) -> tuple[list[SessionObservationRecord], list[SideEffectRecord]]:
    measured = [
        SessionObservationRecord(
            observation_id=part_id(session_id, "blood_pressure", i),
            session_id=session_id,
            course_id=course_id,
            measure="blood_pressure",
            values=(float(reading.systolic), float(reading.diastolic)),
            measured_at=reading.at,
        )
        for i, reading in enumerate(observations.blood_pressure)
    ]
    ratings: tuple[tuple[SessionMeasure, int | None, dt.datetime | None], ...] = (
        ("cadss6", observations.cadss6, observations.cadss6_at),
        ("moaas", observations.sedation_moaas, observations.sedation_moaas_at),
    )
    measured += [
        SessionObservationRecord(
            observation_id=part_id(session_id, measure, 0),
            session_id=session_id,
            course_id=course_id,
            measure=measure,
            values=(float(value),),
            measured_at=at,
        )
        for measure, value, at in ratings
        if value is not None
    ]
    side_effects = [
        SideEffectRecord(
            side_effect_id=part_id(session_id, "side_effect", i),
            code=effect.code,
            severity=effect.severity,
            onset_at=effect.onset_at,
            course_id=course_id,
            session_id=session_id,
            note=effect.note,
        )
        for i, effect in enumerate(observations.side_effects)
    ]
    return measured, side_effects


def open_observations(
    keys: OwnerKeys, sealed: Sequence[SealedObservations]
) -> tuple[list[SessionObservationRecord], list[SideEffectRecord]]:
    """Decrypt and decode one patient's session observations (CPU only)."""
    measured: list[SessionObservationRecord] = []
    side_effects: list[SideEffectRecord] = []
    if not sealed:
        return measured, side_effects
    plaintexts = keys.decrypt_many(
        table=SESSIONS_TABLE,
        column=OBSERVATIONS_COLUMN,
        row_ids=[str(s.session_id) for s in sealed],
        blobs=[bytes(s.ciphertext) for s in sealed],
    )
    for stored, plaintext in zip(sealed, plaintexts, strict=True):
        found = observation_records(stored.session_id, stored.course_id, _decode(plaintext))
        measured += found[0]
        side_effects += found[1]
    return measured, side_effects
