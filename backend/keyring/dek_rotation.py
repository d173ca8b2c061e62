"""DEK rotation: a new data key per owner, every ciphertext re-encrypted, old versions destroyed.

``interlude keys rotate-deks`` runs this against a live service. Per owner (engineering-notes
§D.7 "Rotation"):

a. if the owner's active key was created before the run started, ``Keyring.create_key`` adds the
   next version and retires the old one; new writes use the new version from that commit on;
b. every ciphertext of the owner (``encrypted_columns.ENCRYPTED_TABLES``) whose header names
   another version is decrypted and encrypted again under the active version, in batches of
   short transactions, each row written with compare-and-swap (``UPDATE … WHERE id = :id AND
   col = :old``): a row the app changed meanwhile is left alone, never overwritten, and picked up
   again (the app's own write may still use the old key, see c);
c. a retired version is destroyed once no row names it and it was retired longer than the grace
   period ago: a request that read the old key just before the switch may still be writing with
   it. Versions still inside the grace period are destroyed by a later ``--resume``.

Nothing records which owners are done: an owner is done when its active key is newer than the
run's start and no ciphertext names another version, which a resume finds out again. The
``dek_rotations`` row only holds timestamps and counters for ``keys status``.

A ciphertext under an old version that fails to decrypt (tampered, or its version is gone) is
counted, logged by the keyring as a decryption alert, and left as it is; its owner stays not done
and keeps that old version, so the run does not finish until someone looks.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, cast

import msgspec
from sqlalchemy import LargeBinary, Table, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

import backend.db.models  # noqa: F401  (registers every table on the metadata)
from backend.crypto import DecryptionError, parse_field
from backend.db.engine import create_sessionmaker
from backend.db.models.dek_rotation import DekRotation
from backend.keyring.encrypted_columns import ENCRYPTED_TABLES, EncryptedTable, check_registry
from backend.keyring.service import DATA_KEYS, Keyring, OwnerErasedError, OwnerKeys
from backend.lib.clock import Clock, SystemClock
from backend.lib.ids import uuid7

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_GRACE_PERIOD",
    "DEK_ROTATIONS",
    "DekRotationProgress",
    "NoRotationToResumeError",
    "RotationInProgressError",
    "dek_rotation_status",
    "rotate_data_keys",
]

logger = logging.getLogger("interlude.keyring.rotation")

DEFAULT_BATCH_SIZE: Final = 500
# Longer than any request holds a key it read (request timeouts are seconds); see c. above.
DEFAULT_GRACE_PERIOD: Final = timedelta(minutes=5)
# Concurrent app writes can make a pass miss rows (compare-and-swap lost); passes per owner
# before leaving the rest to a resume.
_PASSES_PER_OWNER: Final = 3
_OWNER_PAGE: Final = 500

DEK_ROTATIONS: Final = cast(Table, DekRotation.__table__)  # type: ignore[attr-defined]
_k = DATA_KEYS.c
_r = DEK_ROTATIONS.c


class RotationInProgressError(RuntimeError):
    """An unfinished run exists: resume it rather than start another."""

    message_is_safe_to_log = True


class NoRotationToResumeError(RuntimeError):
    """``--resume`` with no unfinished run."""

    message_is_safe_to_log = True


class DekRotationProgress(msgspec.Struct, frozen=True, kw_only=True):
    run_id: uuid.UUID
    started_at: datetime
    finished_at: datetime | None
    owners_total: int
    """Owners with a live data key, counted when the latest pass began."""
    owners_done: int
    """Owners the latest pass found done (a resume walks every owner again, quickly)."""
    rows_reencrypted: int
    """Ciphertexts re-encrypted over the whole run."""
    rows_unreadable: int
    """Ciphertexts under an old version that the latest pass could not decrypt."""
    versions_destroyed: int
    versions_waiting: int
    """Retired versions not destroyed yet: still named by a row, or inside the grace period."""


@dataclass(slots=True)
class _Counters:
    owners_done: int = 0
    reencrypted: int = 0
    unreadable: int = 0
    destroyed: int = 0


@dataclass(frozen=True, slots=True)
class _Target:
    entry: EncryptedTable
    table: Table


def _version_bytes(column: Any) -> Any:
    # Header bytes 3..6 (1-based) are the big-endian DEK version (backend.crypto.format).
    return func.substr(column, 3, 4, type_=LargeBinary)


def _targets() -> list[_Target]:
    return [_Target(entry, entry.sql_table(SQLModel.metadata)) for entry in ENCRYPTED_TABLES]


async def rotate_data_keys(
    engine: AsyncEngine,
    keyring: Keyring,
    *,
    resume: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grace_period: timedelta = DEFAULT_GRACE_PERIOD,
    clock: Clock | None = None,
    on_progress: Callable[[DekRotationProgress], None] | None = None,
) -> DekRotationProgress:
    """Start a DEK rotation (or, with ``resume``, continue the unfinished one) and walk every owner.

    Each step commits on its own; ``on_progress`` is called after each owner; stopping at any
    point (an exception from ``on_progress``, a killed process) loses nothing and ``resume=True``
    continues. ``clock`` must be the keyring's clock (it dates the retirements the grace period
    counts from). Raises ``RotationInProgressError`` / ``NoRotationToResumeError`` for a start or
    resume that does not fit, and ``UnclassifiedColumnsError`` if a binary column is not in the
    registry (rotating would destroy keys under ciphertexts it never saw).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    check_registry(SQLModel.metadata)
    run = _Run(engine, keyring, clock or SystemClock(), batch_size, grace_period)
    await run.open(resume=resume)
    return await run.walk(on_progress)


async def dek_rotation_status(engine: AsyncEngine) -> DekRotationProgress | None:
    """The latest run's progress, or None if DEK rotation never ran."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(DEK_ROTATIONS).order_by(_r.started_at.desc(), _r.id.desc()).limit(1)
            )
        ).first()
        if row is None:
            return None
        waiting = await _waiting(connection)
    return _progress(row, waiting)


async def _waiting(connection: AsyncConnection) -> int:
    return int(
        (
            await connection.execute(
                select(func.count())
                .select_from(DATA_KEYS)
                .where(_k.retired_at.is_not(None), _k.destroyed_at.is_(None))
            )
        ).scalar_one()
    )


def _progress(row: Any, waiting: int) -> DekRotationProgress:
    return DekRotationProgress(
        run_id=row.id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        owners_total=int(row.owners_total),
        owners_done=int(row.owners_done),
        rows_reencrypted=int(row.rows_reencrypted),
        rows_unreadable=int(row.rows_unreadable),
        versions_destroyed=int(row.versions_destroyed),
        versions_waiting=waiting,
    )


class _Run:
    def __init__(
        self,
        engine: AsyncEngine,
        keyring: Keyring,
        clock: Clock,
        batch_size: int,
        grace_period: timedelta,
    ) -> None:
        self._engine = engine
        self._sessions = create_sessionmaker(engine)
        self._keyring = keyring
        self._clock = clock
        self._batch_size = batch_size
        self._grace = grace_period
        self._targets = _targets()
        self._run_id = uuid.UUID(int=0)
        self._started_at = clock.now()

    async def open(self, *, resume: bool) -> None:
        async with self._engine.begin() as connection:
            unfinished = (
                await connection.execute(
                    select(_r.id, _r.started_at)
                    .where(_r.finished_at.is_(None))
                    .order_by(_r.started_at.desc())
                    .limit(1)
                )
            ).first()
            if resume:
                if unfinished is None:
                    raise NoRotationToResumeError("no unfinished data-key rotation to resume")
                self._run_id, self._started_at = unfinished.id, unfinished.started_at
                return
            if unfinished is not None:
                raise RotationInProgressError(
                    f"a data-key rotation started at {unfinished.started_at.isoformat()} is not"
                    " finished; resume it with `interlude keys rotate-deks --resume`"
                )
            now = self._clock.now()
            self._run_id, self._started_at = uuid7(), now
            await connection.execute(
                DEK_ROTATIONS.insert().values(id=self._run_id, started_at=now, updated_at=now)
            )

    async def walk(
        self, on_progress: Callable[[DekRotationProgress], None] | None
    ) -> DekRotationProgress:
        live_owner = and_(_k.destroyed_at.is_(None), _k.wrapped_dek.is_not(None))
        async with self._engine.begin() as connection:
            total = (
                await connection.execute(
                    select(func.count(func.distinct(_k.owner_id))).where(live_owner)
                )
            ).scalar_one()
            await connection.execute(
                update(DEK_ROTATIONS)
                .where(_r.id == self._run_id)
                .values(
                    owners_total=int(total),
                    owners_done=0,
                    rows_unreadable=0,
                    updated_at=self._clock.now(),
                )
            )
        counters = _Counters()
        all_done = True
        after: uuid.UUID | None = None
        while True:
            statement = select(_k.owner_id).where(live_owner).distinct().order_by(_k.owner_id)
            if after is not None:
                statement = statement.where(_k.owner_id > after)
            async with self._engine.connect() as connection:
                owners = [
                    row.owner_id
                    for row in (await connection.execute(statement.limit(_OWNER_PAGE))).all()
                ]
            if not owners:
                break
            for owner_id in owners:
                done = await self._owner(owner_id, counters)
                all_done = all_done and done
                progress = await self._record(counters)
                if on_progress is not None:
                    on_progress(progress)
            after = owners[-1]
        return await self._finish(counters, all_done=all_done)

    async def _owner(self, owner_id: uuid.UUID, counters: _Counters) -> bool:
        """Steps a to c for one owner; True when the owner is done (old versions may still wait
        for the grace period)."""
        active = await self._ensure_new_key(owner_id)
        if active is None:  # erased meanwhile: nothing left to rotate
            counters.owners_done += 1
            return True
        for _ in range(_PASSES_PER_OWNER):
            missed = 0
            for target in self._targets:
                missed += await self._reencrypt(target, owner_id, active, counters)
            if not missed:
                break
        return await self._destroy_unused(owner_id, active, counters)

    async def _ensure_new_key(self, owner_id: uuid.UUID) -> int | None:
        """The owner's active version, created by this run if it predates it; None if erased."""
        try:
            return await self._new_key_unless_current(owner_id)
        except IntegrityError:
            # Another run added this version first (primary key owner, version); read it again.
            return await self._new_key_unless_current(owner_id)

    async def _new_key_unless_current(self, owner_id: uuid.UUID) -> int | None:
        async with self._sessions() as session, session.begin():
            connection = await session.connection()
            rows = (
                await connection.execute(
                    select(_k.dek_version, _k.created_at)
                    .where(
                        _k.owner_id == owner_id, _k.retired_at.is_(None), _k.destroyed_at.is_(None)
                    )
                    .order_by(_k.dek_version.desc())
                    .limit(1)
                )
            ).all()
            if not rows:
                return None
            if rows[0].created_at >= self._started_at:
                return int(rows[0].dek_version)
            try:
                return await self._keyring.create_key(session, owner_id)
            except OwnerErasedError:
                return None

    async def _reencrypt(
        self, target: _Target, owner_id: uuid.UUID, active: int, counters: _Counters
    ) -> int:
        """One pass over one table's rows of the owner; returns compare-and-swap misses."""
        table, entry = target.table, target.entry
        row_id = table.c[entry.row_id_column]
        columns = [table.c[name] for name in entry.columns]
        active_bytes = active.to_bytes(4, "big")
        stale = or_(*(and_(c.is_not(None), _version_bytes(c) != active_bytes) for c in columns))
        missed = 0
        after: Any = None
        while True:
            async with self._sessions() as session, session.begin():
                connection = await session.connection()
                statement = select(row_id, *columns).where(
                    table.c[entry.owner_column] == owner_id, stale
                )
                if after is not None:
                    statement = statement.where(row_id > after)
                rows = (
                    await connection.execute(statement.order_by(row_id).limit(self._batch_size))
                ).all()
                if not rows:
                    return missed
                reader = await self._keyring.owner_keys(session, owner_id)
                writer = await self._keyring.owner_keys(session, owner_id, active_only=True)
                for row in rows:
                    for column in columns:
                        outcome = await self._swap(
                            connection, target, column.name, row, reader, writer, active
                        )
                        if outcome == "reencrypted":
                            counters.reencrypted += 1
                        elif outcome == "unreadable":
                            counters.unreadable += 1
                        elif outcome == "missed":
                            missed += 1
                after = rows[-1][0]

    async def _swap(
        self,
        connection: AsyncConnection,
        target: _Target,
        column: str,
        row: Any,
        reader: OwnerKeys,
        writer: OwnerKeys,
        active: int,
    ) -> str:
        blob = row._mapping[column]
        if blob is None:
            return "empty"
        blob = bytes(blob)
        entry, table = target.entry, target.table
        row_id = row._mapping[entry.row_id_column]
        aad = {"table": entry.table, "column": column, "row_id": str(row_id)}
        try:
            header, _ = parse_field(blob)
            if header.dek_version == active:
                return "current"
            plaintext = reader.decrypt(blob=blob, **aad)
        except DecryptionError:
            # Logged by the keyring as a decryption alert (ids only); the row is left as it is.
            return "unreadable"
        if writer.active_version != active:
            # A newer version appeared (another run): let that run own this owner.
            return "missed"
        fresh = writer.encrypt(plaintext=plaintext, **aad)
        result = await connection.execute(
            update(table)
            .where(table.c[entry.row_id_column] == row_id, table.c[column] == blob)
            .values({column: fresh})
        )
        return "reencrypted" if result.rowcount == 1 else "missed"

    async def _destroy_unused(self, owner_id: uuid.UUID, active: int, counters: _Counters) -> bool:
        async with self._engine.begin() as connection:
            named: set[int] = set()
            for target in self._targets:
                table, entry = target.table, target.entry
                for name in entry.columns:
                    column = table.c[name]
                    versions = await connection.execute(
                        select(_version_bytes(column))
                        .where(table.c[entry.owner_column] == owner_id, column.is_not(None))
                        .distinct()
                    )
                    named.update(
                        int.from_bytes(bytes(v), "big")
                        for (v,) in versions.all()
                        if v is not None and len(v) == 4
                    )
            retired = (
                await connection.execute(
                    select(_k.dek_version, _k.retired_at).where(
                        _k.owner_id == owner_id,
                        _k.retired_at.is_not(None),
                        _k.destroyed_at.is_(None),
                    )
                )
            ).all()
            cutoff = self._clock.now() - self._grace
            for key in retired:
                version = int(key.dek_version)
                if (
                    version not in named
                    and key.retired_at <= cutoff
                    and await self._keyring.destroy_version(connection, owner_id, version)
                ):
                    counters.destroyed += 1
        done = named <= {active}
        if done:
            counters.owners_done += 1
        return done

    async def _record(self, counters: _Counters) -> DekRotationProgress:
        """Add this owner's counts to the run row; the counters restart for the next owner."""
        async with self._engine.begin() as connection:
            await connection.execute(
                update(DEK_ROTATIONS)
                .where(_r.id == self._run_id)
                .values(
                    owners_done=_r.owners_done + counters.owners_done,
                    rows_reencrypted=_r.rows_reencrypted + counters.reencrypted,
                    rows_unreadable=_r.rows_unreadable + counters.unreadable,
                    versions_destroyed=_r.versions_destroyed + counters.destroyed,
                    updated_at=self._clock.now(),
                )
            )
            row = (
                await connection.execute(select(DEK_ROTATIONS).where(_r.id == self._run_id))
            ).one()
            waiting = await _waiting(connection)
        counters.owners_done = counters.reencrypted = counters.unreadable = counters.destroyed = 0
        return _progress(row, waiting)

    async def _finish(self, counters: _Counters, *, all_done: bool) -> DekRotationProgress:
        async with self._engine.begin() as connection:
            waiting = await _waiting(connection)
            values: dict[str, Any] = {"updated_at": self._clock.now()}
            if all_done and waiting == 0:
                values["finished_at"] = self._clock.now()
            await connection.execute(
                update(DEK_ROTATIONS).where(_r.id == self._run_id).values(**values)
            )
            row = (
                await connection.execute(select(DEK_ROTATIONS).where(_r.id == self._run_id))
            ).one()
        progress = _progress(row, waiting)
        logger.info(
            "data-key rotation pass ended",
            extra={
                "fields": {
                    "run": str(progress.run_id),
                    "finished": progress.finished_at is not None,
                    "owners_total": progress.owners_total,
                    "owners_done": progress.owners_done,
                    "rows_reencrypted": progress.rows_reencrypted,
                    "rows_unreadable": progress.rows_unreadable,
                    "versions_destroyed": progress.versions_destroyed,
                    "versions_waiting": waiting,
                }
            },
        )
        return progress
