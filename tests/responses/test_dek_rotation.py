"""``rotate-deks`` on a running app: interrupted and resumed, old keys destroyed after the grace
period, and writes racing the rotation kept; on both databases."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pyotp
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.app import create_app
from backend.config import Settings
from backend.crypto import KekProvider
from backend.domain.sessions import service as sessions
from backend.keyring.dek_rotation import (
    DekRotationProgress,
    NoRotationToResumeError,
    RotationInProgressError,
    dek_rotation_status,
    rotate_data_keys,
)
from backend.keyring.service import DATA_KEYS, Keyring, OwnerKeys
from tests.conftest import SettingsFactory
from tests.identity.conftest import MovableClock, World, build_world, log_in, runtime_of
from tests.responses.keys_world import (
    backdated_clock,
    engine_of,
    populated_world,
    read_back,
    separate_keyring,
    stored_fields,
    submit,
)

ROOT = Path(__file__).resolve().parents[2]


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


class Interrupted(Exception):
    pass


def stop_after(owners: int) -> Callable[[DekRotationProgress], None]:
    seen: list[DekRotationProgress] = []

    def on_progress(step: DekRotationProgress) -> None:
        seen.append(step)
        if len(seen) == owners:
            raise Interrupted

    return on_progress


async def _live_versions(api: AsyncTestClient[Litestar]) -> dict[object, list[int]]:
    live: dict[object, list[int]] = defaultdict(list)
    async with engine_of(api).connect() as connection:
        rows = await connection.execute(
            select(DATA_KEYS.c.owner_id, DATA_KEYS.c.dek_version).where(
                DATA_KEYS.c.destroyed_at.is_(None)
            )
        )
        for owner_id, version in rows:
            live[owner_id].append(int(version))
    return live


async def test_interrupted_rotation_resumes_and_destroys_old_keys_after_the_grace_period(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    before = await read_back(api, world)
    fields_before = await stored_fields(engine_of(api))
    assert {f.dek_version for f in fields_before} == {1}
    owners = set(await _live_versions(api))
    assert len(owners) >= 9  # six staff, three patients
    engine = engine_of(api)
    keyring = separate_keyring(api, clock)  # its own cache, like the CLI process

    clock.advance(minutes=1)
    with pytest.raises(Interrupted):
        await rotate_data_keys(
            engine, keyring, batch_size=2, clock=clock, on_progress=stop_after(4)
        )
    status = await dek_rotation_status(engine)
    assert status is not None
    assert status.finished_at is None
    assert status.owners_done == 4
    assert status.owners_total == len(owners)
    # Halfway: four owners on version 2, the rest on 1, and the app reads both.
    versions = {f.dek_version for f in await stored_fields(engine)}
    assert versions == {1, 2}
    assert await read_back(api, world) == before
    with pytest.raises(RotationInProgressError):
        await rotate_data_keys(engine, keyring, clock=clock)

    # New writes during the rotation use each owner's active key (version 1 or 2 here).
    clock.advance(seconds=30)
    written = await submit(api, world, "patient_b", item2=3)
    before = await read_back(api, world)
    pending = [f for f in await stored_fields(engine) if f.dek_version == 1]
    done = await rotate_data_keys(engine, keyring, resume=True, batch_size=2, clock=clock)
    assert done.finished_at is None  # old versions wait for the grace period
    assert done.owners_done == done.owners_total == len(owners)
    assert done.versions_waiting == len(owners)
    assert done.rows_reencrypted == status.rows_reencrypted + len(pending)
    assert done.rows_unreadable == 0
    after_resume = await stored_fields(engine)
    assert {f.dek_version for f in after_resume} == {2}
    assert written in {str(f.row_id) for f in after_resume}
    assert {(f.table, f.column, f.row_id) for f in after_resume} >= {
        (f.table, f.column, f.row_id) for f in fields_before
    }
    assert all(sorted(v) == [1, 2] for v in (await _live_versions(api)).values())
    assert await read_back(api, world) == before

    clock.advance(minutes=5, seconds=1)  # past the grace period since the last retirement
    finished = await rotate_data_keys(engine, keyring, resume=True, clock=clock)
    assert finished.finished_at is not None
    assert finished.versions_destroyed == len(owners)
    assert finished.versions_waiting == 0
    assert {tuple(v) for v in (await _live_versions(api)).values()} == {(2,)}
    assert await read_back(api, world) == before
    await log_in(api, world.staff["admin_a"], clock)  # the staff TOTP secret decrypts
    with pytest.raises(NoRotationToResumeError):
        await rotate_data_keys(engine, keyring, resume=True, clock=clock)

    # A second rotation works too (a destroyed old version is not erasure).
    clock.advance(minutes=1)
    again = await rotate_data_keys(engine, keyring, clock=clock)
    assert again.owners_done == again.owners_total == len(owners)
    assert {f.dek_version for f in await stored_fields(engine)} == {3}
    assert await read_back(api, world) == before


def _interlude(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        env={**base, "PYTHONPATH": str(ROOT), "INTERLUDE_LOG_LEVEL": "ERROR", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_cli_rotates_against_the_running_app(
    api: AsyncTestClient[Litestar],
    world: World,
    settings: Settings,
    database_url: str,
    make_settings: SettingsFactory,
) -> None:
    before = await read_back(api, world)
    fields = await stored_fields(engine_of(api))
    owners = len(await _live_versions(api))
    env = dict(make_settings.env(database_url))

    run = await asyncio.to_thread(_interlude, ["keys", "rotate-deks", "--batch-size", "3"], env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("rotating data keys; if interrupted, run")
    assert f"owners done: {owners}/{owners}; rows re-encrypted: {len(fields)};" in run.stdout
    assert f"re-encryption done; {owners} old key versions are kept for 5 minutes" in run.stdout
    assert {f.dek_version for f in await stored_fields(engine_of(api))} == {2}
    assert await read_back(api, world) == before  # the app, with its cached keys, still reads

    status = await asyncio.to_thread(_interlude, ["keys", "status"], env)
    assert status.returncode == 0, status.stderr
    assert "NOT FINISHED: run `interlude keys rotate-deks --resume`" in status.stdout
    assert f"old key versions destroyed: 0, waiting: {owners}" in status.stdout

    again = await asyncio.to_thread(_interlude, ["keys", "rotate-deks"], env)
    assert again.returncode == 1
    assert "is not finished; resume it with `interlude keys rotate-deks --resume`" in again.stderr
    resumed = await asyncio.to_thread(_interlude, ["keys", "rotate-deks", "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"rows re-encrypted: {len(fields)};" in resumed.stdout  # nothing twice


async def test_a_write_with_the_key_read_before_the_switch_is_kept_and_its_key_too(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    """A request that read patient A's key just before the rotation switched it writes after the
    owner was re-encrypted: the rotation keeps the old version while the row names it, then
    re-encrypts the row on resume, and the written value is what the API reads."""
    patient = world.patients["patient_a"]
    runtime = runtime_of(api)
    engine = engine_of(api)
    async with runtime.require_sessionmaker()() as session:
        in_flight = await runtime.keyring.owner_keys(session, patient.id, active_only=True)
        row = (await sessions.list_sessions(session, patient.id))[0]
    assert in_flight.active_version == 1

    keyring = separate_keyring(api, clock)
    clock.advance(minutes=1)
    first = await rotate_data_keys(engine, keyring, clock=clock)
    assert first.owners_done == first.owners_total

    note = "Written by a request that read the key before the switch."
    late = in_flight.encrypt(
        table="treatment_sessions", column="notes_ct", row_id=str(row.id), plaintext=note.encode()
    )
    table = SQLModel.metadata.tables["treatment_sessions"]
    async with engine.begin() as connection:
        await connection.execute(update(table).where(table.c.id == row.id).values(notes_ct=late))

    clock.advance(minutes=6)  # the grace period is over, but a row still names version 1
    resumed = await rotate_data_keys(engine, keyring, resume=True, clock=clock)
    assert resumed.finished_at is not None
    assert resumed.rows_unreadable == 0
    fields = [f for f in await stored_fields(engine) if f.owner_id == patient.id]
    assert {f.dek_version for f in fields} == {2}
    async with runtime.require_sessionmaker()() as session:
        rows = await sessions.list_sessions(session, patient.id)
        views = await sessions.session_views(session, runtime.keyring, rows)
    assert next(v.notes for v in views if v.id == row.id) == note


@pytest.mark.postgres
async def test_an_app_write_inside_a_rotation_batch_is_not_overwritten(
    postgres_database_url: str, make_settings: SettingsFactory
) -> None:
    """The app changes a ciphertext between the rotation's read of the row and its update: the
    compare-and-swap update misses, the app's value stays. (PostgreSQL: SQLite runs one writer
    at a time, so its transactions cannot interleave like this.)"""
    clock = backdated_clock()
    settings = make_settings(postgres_database_url)
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as api:
        world = await build_world(api, clock)
        clinician = world.staff["clinician_a"]
        first = await api.post("/api/v1/auth/staff/totp", headers=clinician.headers)
        assert first.status_code == 201, first.text  # a pending TOTP secret, under version 1
        enrolments: list[str] = []

        async def enrol_again() -> None:
            again = await api.post("/api/v1/auth/staff/totp", headers=clinician.headers)
            assert again.status_code == 201, again.text
            enrolments.append(again.json()["secret"])

        keyring = _WriteDuringBatch(
            runtime_of(api).kek, clock=clock, owner=clinician.id, write=enrol_again
        )
        clock.advance(minutes=1)
        done = await rotate_data_keys(engine_of(api), keyring, clock=clock)
        assert enrolments  # the app wrote inside the rotation's batch
        assert done.owners_done == done.owners_total
        assert {f.dek_version for f in await stored_fields(engine_of(api))} == {2}
        secret = enrolments[0]
        clock.advance(seconds=30)
        confirmed = await api.post(
            "/api/v1/auth/staff/totp/confirm",
            json={"code": pyotp.TOTP(secret).at(clock.now())},
            headers=clinician.headers,
        )
        assert confirmed.status_code == 200, confirmed.text  # the app's secret, not the old one


class _WriteDuringBatch(Keyring):
    """The real keyring, which lets one app request run at the point where the rotation has read
    a batch of the owner's rows and not yet written them."""

    def __init__(
        self,
        kek: KekProvider,
        *,
        clock: MovableClock,
        owner: uuid.UUID,
        write: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(kek, clock=clock)
        self._owner = owner
        self._write: Callable[[], Awaitable[None]] | None = write

    async def owner_keys(
        self,
        session: AsyncSession,
        owner_id: uuid.UUID,
        *,
        active_only: bool = False,
        versions: tuple[int, ...] | None = None,
    ) -> OwnerKeys:
        if owner_id == self._owner and not active_only and self._write is not None:
            write, self._write = self._write, None
            await write()
        return await super().owner_keys(
            session, owner_id, active_only=active_only, versions=versions
        )
