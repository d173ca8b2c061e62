"""Erasure makes a patient's rows unreadable; a tampered, moved or mislabelled ciphertext fails
loudly (a specific error, an alert in the log without PHI) and the API never returns data from it.

What the API answers for a ciphertext that fails to decrypt: 500, as a problem document carrying
only a request id (``backend.lib.problems.handle_unexpected``). Corrupted data is a fault of the
service, not of the request; the log line (``alert: decryption-failed``) names the table, column,
row and error class for whoever investigates, and the caller learns nothing about the data.
"""

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from sqlmodel import SQLModel

from backend.app import create_app
from backend.config import Settings
from backend.crypto import (
    DecryptionError,
    TamperedCiphertextError,
    UnknownKeyError,
    UnsupportedFormatError,
)
from backend.domain.sessions import service as sessions
from backend.keyring.dek_rotation import rotate_data_keys
from backend.keyring.service import DATA_KEYS
from tests.identity.conftest import MovableClock, World, runtime_of
from tests.responses.keys_world import (
    Field,
    backdated_clock,
    engine_of,
    populated_world,
    read_back,
    separate_keyring,
    stored_fields,
)

RESPONSES = "questionnaire_responses"


@pytest.fixture
def clock() -> MovableClock:
    return backdated_clock()


@pytest.fixture
async def api(settings: Settings, clock: MovableClock) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
        yield client


@pytest.fixture
async def world(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:
    return await populated_world(api, clock)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def keyring_log() -> Iterator[_Records]:
    """The keyring's own log lines, whatever the app's logging configuration does with them."""
    handler = _Records()
    logger = logging.getLogger("interlude.keyring")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _responses_of(fields: list[Field], owner: uuid.UUID) -> list[Field]:
    return sorted(
        (
            f
            for f in fields
            if f.table == RESPONSES and f.column == "answers_ct" and f.owner_id == owner
        ),
        key=lambda f: f.row_id,
    )


async def _store(api: AsyncTestClient[Litestar], field: Field, blob: bytes) -> None:
    table = SQLModel.metadata.tables[field.table]
    async with engine_of(api).begin() as connection:
        await connection.execute(
            update(table).where(table.c.id == field.row_id).values({field.column: blob})
        )


async def _decrypt(api: AsyncTestClient[Litestar], field: Field, blob: bytes) -> bytes:
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        return await runtime.keyring.decrypt(
            session,
            field.owner_id,
            table=field.table,
            column=field.column,
            row_id=str(field.row_id),
            blob=blob,
        )


def _flip_bit(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


def _with_version(blob: bytes, version: int) -> bytes:
    return blob[:2] + version.to_bytes(4, "big") + blob[6:]


def _assert_opaque_500(response: Any, secrets: list[str]) -> None:
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) <= {"type", "title", "status", "detail", "instance", "request_id"}
    assert body["request_id"] in body["detail"]
    for secret in secrets:
        assert secret not in response.text


def _phi_of(world: World, name: str) -> list[str]:
    patient = world.patients[name]
    return [patient.mrn, patient.email, f"Patient {patient.mrn}", "fasting", "safety plan"]


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        ("flip-body-bit", TamperedCiphertextError),
        ("flip-header-nonce-bit", TamperedCiphertextError),
        ("truncate", TamperedCiphertextError),
        ("swap-same-patient", TamperedCiphertextError),
        ("swap-across-patients", TamperedCiphertextError),
        ("header-names-missing-version", UnknownKeyError),
        ("header-names-unknown-format", UnsupportedFormatError),
    ],
)
async def test_a_tampered_answer_fails_loudly_and_the_api_returns_no_data(
    api: AsyncTestClient[Litestar],
    world: World,
    keyring_log: _Records,
    tamper: str,
    error: type[DecryptionError],
) -> None:
    fields = await stored_fields(engine_of(api))
    mine = _responses_of(fields, world.patients["patient_a"].id)
    theirs = _responses_of(fields, world.patients["patient_a2"].id)
    target, other = mine[0], mine[1]
    blob = target.blob
    tampered = {
        "flip-body-bit": lambda: _flip_bit(blob, len(blob) - 20),
        "flip-header-nonce-bit": lambda: _flip_bit(blob, 10),
        "truncate": lambda: blob[:30],
        "swap-same-patient": lambda: other.blob,
        "swap-across-patients": lambda: theirs[0].blob,
        "header-names-missing-version": lambda: _with_version(blob, 7),
        "header-names-unknown-format": lambda: b"\x02" + blob[1:],
    }[tamper]()
    if tamper == "swap-same-patient":
        await _store(api, other, blob)  # both rows now hold each other's ciphertext
    await _store(api, target, tampered)

    with pytest.raises(error):
        await _decrypt(api, target, tampered)
    alerts = [r for r in keyring_log.records if r.getMessage() == "decryption failed"]
    assert alerts
    fields_logged = alerts[-1].fields  # type: ignore[attr-defined]
    assert fields_logged["alert"] == "decryption-failed"
    assert fields_logged["error"] == error.__name__
    assert (fields_logged["table"], fields_logged["column"]) == (RESPONSES, "answers_ct")
    assert fields_logged["row_id"] == str(target.row_id)
    logged_text = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in alerts)
    for secret in _phi_of(world, "patient_a"):
        assert secret not in logged_text

    patient = world.patients["patient_a"]
    secrets = _phi_of(world, "patient_a")
    for headers in (world.staff["clinician_a"].headers, patient.headers):
        response = await api.get(f"/api/v1/patients/{patient.id}/responses", headers=headers)
        _assert_opaque_500(response, secrets)
    # The other patient is untouched.
    other_patient = world.patients["patient_a2"]
    fine = await api.get(
        f"/api/v1/patients/{other_patient.id}/responses",
        headers=world.staff["clinician_a"].headers,
    )
    assert fine.status_code == 200, fine.text


async def test_a_tampered_row_under_an_old_key_stops_that_owners_rotation_not_the_others(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock, keyring_log: _Records
) -> None:
    patient = world.patients["patient_a"]
    target = _responses_of(await stored_fields(engine_of(api)), patient.id)[0]
    await _store(api, target, _flip_bit(target.blob, len(target.blob) - 1))
    engine = engine_of(api)
    keyring = separate_keyring(api, clock)
    clock.advance(minutes=1)
    first = await rotate_data_keys(engine, keyring, clock=clock)
    assert first.rows_unreadable == 1
    assert first.owners_done == first.owners_total - 1
    clock.advance(minutes=6)
    resumed = await rotate_data_keys(engine, keyring, resume=True, clock=clock)
    assert resumed.finished_at is None  # someone has to look at the tampered row
    assert resumed.rows_unreadable == 1
    assert resumed.versions_waiting == 1  # patient_a's version 1, still named by that row
    async with engine.connect() as connection:
        live = (
            await connection.execute(
                select(DATA_KEYS.c.dek_version).where(
                    DATA_KEYS.c.owner_id == patient.id, DATA_KEYS.c.destroyed_at.is_(None)
                )
            )
        ).all()
    assert sorted(v for (v,) in live) == [1, 2]
    unreadable = [r for r in keyring_log.records if r.getMessage() == "decryption failed"]
    assert {r.fields["row_id"] for r in unreadable} == {str(target.row_id)}  # type: ignore[attr-defined]


async def test_erasure_makes_the_patients_rows_unreadable_and_is_audited(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    other = world.patients["patient_a2"]
    before = await read_back(api, world)
    fields = [f for f in await stored_fields(engine_of(api)) if f.owner_id == patient.id]
    assert {f.table for f in fields} >= {RESPONSES, "treatment_sessions", "patients", "devices"}

    admin = world.staff["admin_a"]
    erased = await api.delete(f"/api/v1/patients/{patient.id}", headers=admin.headers)
    assert erased.status_code == 204, erased.text

    # Every ciphertext of theirs that is left is unreadable: the key is gone, not guessed at.
    remaining = [f for f in await stored_fields(engine_of(api)) if f.owner_id == patient.id]
    assert {f.table for f in remaining} >= {RESPONSES, "treatment_sessions"}
    for field in remaining:
        with pytest.raises(UnknownKeyError):
            await _decrypt(api, field, field.blob)
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        rows = await sessions.list_sessions(session, patient.id)
        with pytest.raises(UnknownKeyError):
            await sessions.session_views(session, runtime.keyring, rows)

    # The API gives nothing back: no patient, no lookup by identifier, no responses.
    clinician = world.staff["clinician_a"]
    read = await api.get(f"/api/v1/patients/{patient.id}", headers=clinician.headers)
    assert read.status_code in (404, 410), read.text
    for lookup in ({"mrn": patient.mrn}, {"email": patient.email}):
        found = await api.post("/api/v1/patients/lookup", json=lookup, headers=clinician.headers)
        assert found.status_code == 404, found.text
    # The responses routes check the patient's status first: erased is 410, not a failed decrypt.
    for path in ("responses", "scores/phq9-2w"):
        gone = await api.get(f"/api/v1/patients/{patient.id}/{path}", headers=clinician.headers)
        assert gone.status_code == 410, gone.text
        assert gone.json()["type"] == "urn:interlude:problem:gone"
        assert "answers" not in gone.text
    own = await api.get("/api/v1/me", headers=patient.headers)
    assert own.status_code in (401, 403, 404, 410)

    async with engine_of(api).connect() as connection:
        table = SQLModel.metadata.tables["patients"]
        row = (await connection.execute(select(table).where(table.c.id == patient.id))).one()
        assert row.status == "erased"
        assert (row.email_index, row.mrn_index, row.phone_index) == (None, None, None)
        keys = (
            await connection.execute(
                select(DATA_KEYS.c.wrapped_dek, DATA_KEYS.c.destroyed_at).where(
                    DATA_KEYS.c.owner_id == patient.id
                )
            )
        ).all()
        assert keys
        assert all(k.wrapped_dek is None and k.destroyed_at is not None for k in keys)
        audit = SQLModel.metadata.tables["audit_events"]
        entries = (
            await connection.execute(
                select(audit.c.actor_id, audit.c.outcome).where(
                    audit.c.action == "patient.erase", audit.c.resource_id == str(patient.id)
                )
            )
        ).all()
        assert [(e.actor_id, e.outcome) for e in entries] == [(str(admin.id), "success")]

    # Nobody else lost anything.
    for path in (f"/api/v1/patients/{other.id}", f"/api/v1/patients/{other.id}/responses"):
        response = await api.get(path, headers=clinician.headers)
        assert response.status_code == 200
        assert response.json() == before[path]
