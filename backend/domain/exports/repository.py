"""All SQL for export jobs and studies (Core statements on the caller's connection; never
commits). The claim follows the outbox's lease pattern (`backend.domain.outbox.repository`)."""

import uuid
from datetime import datetime, timedelta
from typing import Any, Final, cast

import msgspec
from sqlalchemy import Row, Table, and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.claims import claim_due_rows
from backend.db.models.clinic import Clinic
from backend.db.models.export_job import (
    ExportJob,
    ExportStudy,
    ExportStudyClinic,
    ExportStudyInvitation,
)

JOBS: Final = cast(Table, ExportJob.__table__)  # type: ignore[attr-defined]
STUDIES: Final = cast(Table, ExportStudy.__table__)  # type: ignore[attr-defined]
STUDY_CLINICS: Final = cast(Table, ExportStudyClinic.__table__)  # type: ignore[attr-defined]
INVITATIONS: Final = cast(Table, ExportStudyInvitation.__table__)  # type: ignore[attr-defined]
_CLINICS: Final = cast(Table, Clinic.__table__)  # type: ignore[attr-defined]
_j = JOBS.c
_s = STUDIES.c
_sc = STUDY_CLINICS.c
_i = INVITATIONS.c

TERMINAL_STATES: Final = frozenset({"done", "failed", "refused", "expired", "downloaded"})


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    requester_id: uuid.UUID | None
    requester_role: str
    requester_clinic_id: uuid.UUID | None
    study_id: uuid.UUID | None
    clinic_ids: str
    profile: str
    formats: str
    archive: str
    k_required: int
    pseudonym_key_ct: bytes | None
    created_at: datetime
    state: str = "queued"


async def insert_job(connection: AsyncConnection, job: NewJob) -> None:
    await connection.execute(JOBS.insert().values(msgspec.structs.asdict(job)))


async def get_job(connection: AsyncConnection, job_id: uuid.UUID) -> Row[Any] | None:
    return (await connection.execute(select(JOBS).where(_j.id == job_id))).first()


async def claim_next(
    connection: AsyncConnection, *, instance: str, now: datetime, lease: timedelta
) -> Row[Any] | None:
    """Claim the oldest queued job, or a running one whose lease ran out (its instance died),
    as `backend.db.claims` claims any due row: one job, not several leased to one runner that
    runs one and leaves the others waiting."""
    due = or_(_j.state == "queued", and_(_j.state == "running", _j.lease_until < now))
    claimed = await claim_due_rows(
        connection,
        JOBS,
        _j.id,
        due,
        order_by=_j.created_at,
        limit=1,
        values={
            "state": "running",
            "claimed_by": instance,
            "lease_until": now + lease,
            "attempts": _j.attempts + 1,
            "started_at": now,
            "progress_rows": 0,
            "progress_percent": 0,
        },
        returning=list(JOBS.c),
    )
    return claimed[0] if claimed else None


def _mine(job_id: uuid.UUID, instance: str) -> Any:
    # An instance whose lease was taken over cannot overwrite the new owner's work.
    return and_(_j.id == job_id, _j.claimed_by == instance, _j.state == "running")


async def record_progress(
    connection: AsyncConnection,
    job_id: uuid.UUID,
    *,
    instance: str,
    rows: int,
    percent: int,
    lease_until: datetime,
) -> bool:
    """Progress and a renewed lease; False when the job is no longer this instance's."""
    result = await connection.execute(
        update(JOBS)
        .where(_mine(job_id, instance))
        .values(progress_rows=rows, progress_percent=percent, lease_until=lease_until)
    )
    return bool(result.rowcount)


async def finish(
    connection: AsyncConnection,
    job_id: uuid.UUID,
    *,
    instance: str,
    values: dict[str, Any],
    cohort: str | None = None,
) -> bool:
    """Move the job to its outcome (done, refused, failed, or back to queued); guarded by the
    lease owner and, given `cohort`, by the job's clinics still being those it ran with (a
    clinic that left the study meanwhile narrowed them: `narrow_cohort`)."""
    guard = _mine(job_id, instance)
    if cohort is not None:
        guard = and_(guard, _j.clinic_ids == cohort)
    result = await connection.execute(
        update(JOBS).where(guard).values(claimed_by=None, lease_until=None, **values)
    )
    return bool(result.rowcount)


async def release(connection: AsyncConnection, job_id: uuid.UUID, *, instance: str) -> bool:
    """Give a running job back at once (graceful shutdown): queued again for any instance,
    rather than leased to a stopped one until the lease runs out. Guarded by the lease owner, so
    a stale instance cannot undo another's claim; False when the job is no longer this
    instance's. The progress shown stays until the next claim; the attempt is not counted (it
    did not fail), so restarts alone never use up the runner's `MAX_ATTEMPTS`."""
    result = await connection.execute(
        update(JOBS)
        .where(_mine(job_id, instance))
        .values(state="queued", claimed_by=None, lease_until=None, attempts=_j.attempts - 1)
    )
    return bool(result.rowcount)


async def mark_downloaded(
    connection: AsyncConnection, job_id: uuid.UUID, *, requester_id: uuid.UUID, now: datetime
) -> Row[Any] | None:
    """Done -> downloaded, once: of two racing downloads only one gets the row back."""
    statement = (
        update(JOBS)
        .where(
            _j.id == job_id,
            _j.requester_id == requester_id,
            _j.state == "done",
            or_(_j.expires_at.is_(None), _j.expires_at > now),
        )
        .values(state="downloaded", downloaded_at=now)
        .returning(*JOBS.c)
    )
    return (await connection.execute(statement)).first()


async def expire_due(connection: AsyncConnection, *, now: datetime) -> list[Row[Any]]:
    statement = (
        update(JOBS)
        .where(_j.state == "done", _j.expires_at <= now)
        .values(state="expired")
        .returning(_j.id, _j.result_path)
    )
    return list((await connection.execute(statement)).all())


async def with_files_to_delete(
    connection: AsyncConnection, *, downloaded_before: datetime
) -> list[Any]:
    """Jobs whose archive is no longer to be handed out: expired, or downloaded long enough ago
    that the download's response has surely opened the file."""
    statement = select(_j.id, _j.result_path).where(
        _j.result_path.is_not(None),
        or_(
            _j.state == "expired",
            and_(_j.state == "downloaded", _j.downloaded_at <= downloaded_before),
        ),
    )
    return list((await connection.execute(statement)).all())


async def forget_file(connection: AsyncConnection, job_id: uuid.UUID) -> None:
    await connection.execute(update(JOBS).where(_j.id == job_id).values(result_path=None))


# --- studies --------------------------------------------------------------------------------


async def insert_study(
    connection: AsyncConnection,
    *,
    study_id: uuid.UUID,
    name: str,
    stable_ids: bool,
    pseudonym_key_ct: bytes | None,
    created_by: uuid.UUID | None,
    now: datetime,
) -> None:
    await connection.execute(
        STUDIES.insert().values(
            id=study_id,
            name=name,
            stable_ids=stable_ids,
            pseudonym_key_ct=pseudonym_key_ct,
            created_by=created_by,
            created_at=now,
        )
    )


async def get_study(connection: AsyncConnection, study_id: uuid.UUID) -> Row[Any] | None:
    return (await connection.execute(select(STUDIES).where(_s.id == study_id))).first()


async def find_study(connection: AsyncConnection, name: str) -> Row[Any] | None:
    return (await connection.execute(select(STUDIES).where(_s.name == name))).first()


async def study_clinics(connection: AsyncConnection, study_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await connection.execute(
        select(_sc.clinic_id).where(_sc.study_id == study_id).order_by(_sc.clinic_id)
    )
    return [row.clinic_id for row in rows.all()]


async def add_study_clinic(
    connection: AsyncConnection,
    *,
    study_id: uuid.UUID,
    clinic_id: uuid.UUID,
    consented_by: uuid.UUID | None,
    now: datetime,
) -> bool:
    existing = await connection.scalar(
        select(_sc.clinic_id).where(_sc.study_id == study_id, _sc.clinic_id == clinic_id)
    )
    if existing is not None:
        return False
    await connection.execute(
        STUDY_CLINICS.insert().values(
            study_id=study_id, clinic_id=clinic_id, consented_by=consented_by, consented_at=now
        )
    )
    return True


async def is_member(connection: AsyncConnection, study_id: uuid.UUID, clinic_id: uuid.UUID) -> bool:
    found = await connection.scalar(
        select(_sc.clinic_id).where(_sc.study_id == study_id, _sc.clinic_id == clinic_id)
    )
    return found is not None


async def remove_study_clinic(
    connection: AsyncConnection, *, study_id: uuid.UUID, clinic_id: uuid.UUID
) -> bool:
    result = await connection.execute(
        delete(STUDY_CLINICS).where(_sc.study_id == study_id, _sc.clinic_id == clinic_id)
    )
    return bool(result.rowcount)


async def clinic_exists(connection: AsyncConnection, clinic_id: uuid.UUID) -> bool:
    return bool(await connection.scalar(select(exists().where(_CLINICS.c.id == clinic_id))))


async def study_invitations(connection: AsyncConnection, study_id: uuid.UUID) -> list[uuid.UUID]:
    """The clinics invited to the study that have not joined, declined or been revoked yet."""
    rows = await connection.execute(
        select(_i.clinic_id).where(_i.study_id == study_id).order_by(_i.clinic_id)
    )
    return [row.clinic_id for row in rows.all()]


async def is_invited(
    connection: AsyncConnection, study_id: uuid.UUID, clinic_id: uuid.UUID
) -> bool:
    found = await connection.scalar(
        select(_i.clinic_id).where(_i.study_id == study_id, _i.clinic_id == clinic_id)
    )
    return found is not None


async def add_invitation(
    connection: AsyncConnection,
    *,
    study_id: uuid.UUID,
    clinic_id: uuid.UUID,
    invited_by: uuid.UUID | None,
    now: datetime,
) -> bool:
    """False when the clinic is invited already (the first invitation stays). The caller holds
    the study's row lock, so two invitations cannot race to insert."""
    if await is_invited(connection, study_id, clinic_id):
        return False
    await connection.execute(
        INVITATIONS.insert().values(
            study_id=study_id, clinic_id=clinic_id, invited_by=invited_by, invited_at=now
        )
    )
    return True


async def remove_invitation(
    connection: AsyncConnection, *, study_id: uuid.UUID, clinic_id: uuid.UUID
) -> bool:
    """Consume (join), decline or revoke one pending invitation; False when there was none."""
    result = await connection.execute(
        delete(INVITATIONS).where(_i.study_id == study_id, _i.clinic_id == clinic_id)
    )
    return bool(result.rowcount)


async def remove_invitations(connection: AsyncConnection, study_id: uuid.UUID) -> None:
    await connection.execute(delete(INVITATIONS).where(_i.study_id == study_id))


async def undelivered_jobs(connection: AsyncConnection, study_id: uuid.UUID) -> list[Any]:
    """The study's jobs whose archive has not gone out yet: queued, running or done."""
    statement = select(_j.id, _j.state, _j.clinic_ids, _j.requester_clinic_id).where(
        _j.study_id == study_id, _j.state.in_(("queued", "running", "done"))
    )
    return list((await connection.execute(statement)).all())


async def narrow_cohort(
    connection: AsyncConnection, job_id: uuid.UUID, *, was: str, clinic_ids: str
) -> bool:
    """Replace a queued or running job's clinics (a clinic left the study). A running job's
    runner then cannot finish it as done (`finish` with `cohort`) and runs it again with these
    clinics. False when the job moved on (done, or its clinics changed) in the meantime."""
    result = await connection.execute(
        update(JOBS)
        .where(_j.id == job_id, _j.state.in_(("queued", "running")), _j.clinic_ids == was)
        .values(clinic_ids=clinic_ids)
    )
    return bool(result.rowcount)


async def cancel_job(
    connection: AsyncConnection, job_id: uuid.UUID, *, failure: str, now: datetime
) -> bool:
    """End a queued or running job as failed, taking it from its runner (whose guarded writes
    then fail: it stops at its next progress report and publishes nothing)."""
    result = await connection.execute(
        update(JOBS)
        .where(_j.id == job_id, _j.state.in_(("queued", "running")))
        .values(state="failed", failure=failure, finished_at=now, claimed_by=None, lease_until=None)
    )
    return bool(result.rowcount)


async def withdraw_result(connection: AsyncConnection, job_id: uuid.UUID) -> bool:
    """A done job's archive will not be handed out: expired now (the cleanup deletes it)."""
    result = await connection.execute(
        update(JOBS).where(_j.id == job_id, _j.state == "done").values(state="expired")
    )
    return bool(result.rowcount)
