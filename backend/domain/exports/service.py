"""Requesting, following and downloading research exports; defining studies (never commits).

Who may do what (DESIGN §8, `Scope.EXPORT`): researchers and clinic admins, for their own
clinic. A study is one or more clinics whose admins consented to research use of their
consenting patients' data in it; a researcher may export a study their clinic belongs to. A
clinic joins a study only when a member's admin invited it (the members decide who receives
their patients' data); its admin may withdraw it at any time. Shifted dates (a limited data
set) and free text need a clinic admin's request, which is the approval on record. A job is
visible to its requester and to the admins of the requester's clinic; only the requester
downloads it, once. Everything is audited with purpose ``research``; a job of another clinic,
or a study the caller's clinic has no part in, is "not found", never "forbidden", so ids
cannot be probed.
"""

import uuid
from typing import Any, ClassVar

import msgspec
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.exports import repository
from backend.domain.exports.deid import DeidentificationProfile
from backend.domain.exports.jobs import (
    JOBS_TABLE,
    STUDIES_TABLE,
    new_pseudonym_key,
)
from backend.domain.exports.schemas import (
    ExportRequest,
    ExportView,
    NewStudy,
    StudyInvitation,
    StudyView,
)
from backend.domain.exports.writers import ExportFormats
from backend.identity.audit_trail import Outcome, audit
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.lib.errors import (
    Conflict,
    DomainError,
    FieldProblem,
    Forbidden,
    InvalidInput,
    NotFound,
)
from backend.lib.ids import uuid7
from backend.lib.preconditions import lock_row
from backend.state import Runtime

_PURPOSE = "research"


class ExportGone(DomainError):
    status_code: ClassVar[int] = 410
    problem_type: ClassVar[str] = "export-gone"
    title: ClassVar[str] = "This export is no longer available"


def _clinic(principal: Principal) -> uuid.UUID:
    if principal.clinic_id is None:  # the access rule refused this already
        raise NotFound("no such export")
    return principal.clinic_id


async def _audit(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None,
    outcome: Outcome = "success",
) -> None:
    await audit(
        session,
        runtime,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        clinic_id=principal.clinic_id,
        purpose=_PURPOSE,
        outcome=outcome,
        actor=principal,
    )


def view(job: Any) -> ExportView:
    profile = msgspec.json.decode(job.profile, type=DeidentificationProfile)
    formats = msgspec.json.decode(job.formats, type=ExportFormats)
    return ExportView(
        id=job.id,
        state=job.state,
        percent=job.progress_percent,
        rows=job.progress_rows,
        study_id=job.study_id,
        formats=tuple(
            name
            for name, wanted in (
                ("parquet", formats.parquet),
                ("csv", formats.csv),
                ("fhir_ndjson", formats.fhir_ndjson),
            )
            if wanted
        ),
        archive=job.archive,
        classification=profile.classification,
        k_required=job.k_required,
        k_achieved=job.k_achieved,
        refusal_reason=job.refusal_reason,
        failure=job.failure,
        sha256=job.checksum,
        size_bytes=job.size_bytes,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
        downloaded_at=job.downloaded_at,
    )


async def request_export(
    session: AsyncSession, runtime: Runtime, principal: Principal, data: ExportRequest
) -> ExportView:
    clinic_id = _clinic(principal)
    connection = await session.connection()
    clinic_ids = [clinic_id]
    stable_ids = False
    if data.study_id is not None:
        # Under the study's lock: a clinic withdrawing at this moment either finds this job (and
        # takes itself out of it) or is no longer among the clinics read here.
        await lock_row(session, repository.STUDIES, data.study_id)
        study = await repository.get_study(connection, data.study_id)
        clinic_ids = await repository.study_clinics(connection, data.study_id)
        if study is None or clinic_id not in clinic_ids:
            await _audit(
                session, runtime, principal, "export.request", "export_study", data.study_id,
                outcome="denied",
            )  # fmt: skip
            await session.commit()
            raise NotFound("no such study for this clinic")
        stable_ids = bool(study.stable_ids)
    if (data.date_shift or data.include_free_text) and principal.role is not Role.CLINIC_ADMIN:
        raise Forbidden(
            "shifted dates and free text make a limited or reviewed data set: "
            "a clinic admin must request them"
        )
    job_id = uuid7()
    profile = DeidentificationProfile(
        id_scope="per_study" if stable_ids else "per_export",
        include_free_text=data.include_free_text,
        date_shift=data.date_shift,
    )
    formats = ExportFormats(
        parquet="parquet" in data.formats,
        csv="csv" in data.formats,
        fhir_ndjson="fhir_ndjson" in data.formats,
    )
    now = runtime.clock.now()
    # Even a stable-id study gets a per-export key row: unused then, destroyed with the job.
    key_ct = await new_pseudonym_key(session, runtime.keyring, owner_id=job_id, table=JOBS_TABLE)
    await repository.insert_job(
        connection,
        repository.NewJob(
            id=job_id,
            requester_id=principal.subject_id,
            requester_role=principal.role.value,
            requester_clinic_id=clinic_id,
            study_id=data.study_id,
            clinic_ids=msgspec.json.encode([str(c) for c in clinic_ids]).decode(),
            profile=msgspec.json.encode(profile).decode(),
            formats=msgspec.json.encode(formats).decode(),
            archive=data.archive,
            k_required=data.k,
            pseudonym_key_ct=key_ct,
            created_at=now,
        ),
    )
    job = await repository.get_job(connection, job_id)
    await _audit(session, runtime, principal, "export.request", "export_job", job_id)
    return view(job)


async def _visible_job(
    session: AsyncSession, runtime: Runtime, principal: Principal, job_id: uuid.UUID, action: str
) -> Any:
    job = await repository.get_job(await session.connection(), job_id)
    visible = job is not None and (
        job.requester_id == principal.subject_id
        or (principal.role is Role.CLINIC_ADMIN and job.requester_clinic_id == principal.clinic_id)
    )
    if not visible:
        await _audit(session, runtime, principal, action, "export_job", job_id, outcome="denied")
        await session.commit()
        raise NotFound("no such export")
    return job


async def read_export(
    session: AsyncSession, runtime: Runtime, principal: Principal, job_id: uuid.UUID
) -> ExportView:
    job = await _visible_job(session, runtime, principal, job_id, "export.read")
    await _audit(session, runtime, principal, "export.read", "export_job", job_id)
    return view(job)


async def claim_download(
    session: AsyncSession, runtime: Runtime, principal: Principal, job_id: uuid.UUID
) -> Any:
    """Mark the job downloaded and return it; the caller streams its archive. Once only."""
    job = await _visible_job(session, runtime, principal, job_id, "export.download")
    if job.requester_id != principal.subject_id:
        await _audit(
            session, runtime, principal, "export.download", "export_job", job_id, outcome="denied"
        )
        await session.commit()
        raise Forbidden("only the researcher who requested an export can download it")
    if job.state in {"queued", "running"}:
        raise Conflict(f"the export is not ready yet ({job.progress_percent}% done)")
    if job.state == "refused":
        raise Conflict(f"the export was refused: {job.refusal_reason}")
    if job.state == "failed":
        raise Conflict("the export failed; request it again")
    claimed = await repository.mark_downloaded(
        await session.connection(),
        job_id,
        requester_id=principal.subject_id,
        now=runtime.clock.now(),
    )
    if claimed is None or claimed.result_path is None:
        await _audit(
            session, runtime, principal, "export.download", "export_job", job_id, outcome="denied"
        )
        await session.commit()
        raise ExportGone("this export was already downloaded or has expired; request a new one")
    await _audit(session, runtime, principal, "export.download", "export_job", job_id)
    return claimed


# --- studies --------------------------------------------------------------------------------

WITHDRAWN_FAILURE = "clinic_withdrew"
"""A job ended because the requester's own clinic left the study before it was written."""


async def _study_view(session: AsyncSession, study_id: uuid.UUID, *, member: bool) -> StudyView:
    connection = await session.connection()
    study = await repository.get_study(connection, study_id)
    if study is None:
        raise NotFound("no such study")
    return StudyView(
        id=study.id,
        name=study.name,
        stable_ids=study.stable_ids,
        clinic_ids=tuple(await repository.study_clinics(connection, study_id)),
        invited_clinic_ids=(
            tuple(await repository.study_invitations(connection, study_id)) if member else None
        ),
    )


async def _no_such_study(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: str,
    study_id: uuid.UUID,
) -> NotFound:
    """A study the caller's clinic has no part in is "not found", whether it exists or not, so
    ids cannot be probed; the attempt is audited (committed: the request fails)."""
    await _audit(session, runtime, principal, action, "export_study", study_id, outcome="denied")
    await session.commit()
    return NotFound("no such study for this clinic")


async def _locked_membership(
    session: AsyncSession, study_id: uuid.UUID, clinic_id: uuid.UUID
) -> tuple[bool, bool]:
    """(the study exists, the clinic is a member), read under the study's row lock: every
    change of a study's clinics and every export request of it holds that lock, so none of them
    acts on membership another is changing (SQLite: one writer at a time anyway)."""
    await lock_row(session, repository.STUDIES, study_id)
    connection = await session.connection()
    if await repository.get_study(connection, study_id) is None:
        return False, False
    return True, await repository.is_member(connection, study_id, clinic_id)


def _invitation_id(study_id: uuid.UUID, clinic_id: uuid.UUID) -> str:
    return f"{study_id}:{clinic_id}"


async def create_study(
    session: AsyncSession, runtime: Runtime, principal: Principal, data: NewStudy
) -> StudyView:
    """A new study with the admin's clinic as its first consenting member."""
    clinic_id = _clinic(principal)
    connection = await session.connection()
    if await repository.find_study(connection, data.name) is not None:
        raise Conflict("a study with this name exists")
    study_id = uuid7()
    now = runtime.clock.now()
    key_ct = None
    if data.stable_ids:
        key_ct = await new_pseudonym_key(
            session, runtime.keyring, owner_id=study_id, table=STUDIES_TABLE
        )
    await repository.insert_study(
        connection,
        study_id=study_id,
        name=data.name,
        stable_ids=data.stable_ids,
        pseudonym_key_ct=key_ct,
        created_by=principal.subject_id,
        now=now,
    )
    await repository.add_study_clinic(
        connection, study_id=study_id, clinic_id=clinic_id, consented_by=principal.subject_id,
        now=now,
    )  # fmt: skip
    await _audit(session, runtime, principal, "export.study.create", "export_study", study_id)
    return await _study_view(session, study_id, member=True)


async def read_study(
    session: AsyncSession, runtime: Runtime, principal: Principal, study_id: uuid.UUID
) -> StudyView:
    """The study as its members see it; an invited clinic sees it too (what it would join),
    without the other pending invitations."""
    clinic_id = _clinic(principal)
    connection = await session.connection()
    exists = await repository.get_study(connection, study_id) is not None
    member = exists and await repository.is_member(connection, study_id, clinic_id)
    if not (member or (exists and await repository.is_invited(connection, study_id, clinic_id))):
        raise await _no_such_study(session, runtime, principal, "export.study.read", study_id)
    await _audit(session, runtime, principal, "export.study.read", "export_study", study_id)
    return await _study_view(session, study_id, member=member)


async def invite_to_study(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    study_id: uuid.UUID,
    data: StudyInvitation,
) -> tuple[StudyView, bool]:
    """A member clinic's admin invites another clinic; returns the study and whether the
    invitation is new. Inviting a clinic invited already changes nothing (a second click, or a
    colleague's, is not an error); inviting a member is a conflict (nothing to invite it to)."""
    clinic_id = _clinic(principal)
    _exists, member = await _locked_membership(session, study_id, clinic_id)
    if not member:
        raise await _no_such_study(session, runtime, principal, "export.study.invite", study_id)
    connection = await session.connection()
    if not await repository.clinic_exists(connection, data.clinic_id):
        raise InvalidInput(
            "no clinic has this id",
            errors=[FieldProblem(pointer="/clinic_id", code="unknown", message="no such clinic")],
        )
    if await repository.is_member(connection, study_id, data.clinic_id):
        raise Conflict("this clinic is a member of the study already")
    created = await repository.add_invitation(
        connection,
        study_id=study_id,
        clinic_id=data.clinic_id,
        invited_by=principal.subject_id,
        now=runtime.clock.now(),
    )
    await _audit(
        session, runtime, principal, "export.study.invite", "export_study_invitation",
        _invitation_id(study_id, data.clinic_id),
    )  # fmt: skip
    return await _study_view(session, study_id, member=True), created


async def remove_invitation(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    study_id: uuid.UUID,
    invited_clinic_id: uuid.UUID,
) -> None:
    """A member clinic's admin revokes a pending invitation, or the invited clinic's admin
    declines it."""
    clinic_id = _clinic(principal)
    _exists, member = await _locked_membership(session, study_id, clinic_id)
    connection = await session.connection()
    allowed = member or invited_clinic_id == clinic_id
    if not (
        allowed
        and await repository.remove_invitation(
            connection, study_id=study_id, clinic_id=invited_clinic_id
        )
    ):
        raise await _no_such_study(session, runtime, principal, "export.study.uninvite", study_id)
    await _audit(
        session, runtime, principal, "export.study.uninvite", "export_study_invitation",
        _invitation_id(study_id, invited_clinic_id),
    )  # fmt: skip


async def join_study(
    session: AsyncSession, runtime: Runtime, principal: Principal, study_id: uuid.UUID
) -> StudyView:
    """The admin's clinic consents to research use of its data in the study: only with a
    member's pending invitation, which joining consumes. Joining again changes nothing."""
    clinic_id = _clinic(principal)
    exists, member = await _locked_membership(session, study_id, clinic_id)
    connection = await session.connection()
    if not member:
        invited = exists and await repository.remove_invitation(
            connection, study_id=study_id, clinic_id=clinic_id
        )
        if not invited:
            raise await _no_such_study(session, runtime, principal, "export.study.join", study_id)
        await repository.add_study_clinic(
            connection,
            study_id=study_id,
            clinic_id=clinic_id,
            consented_by=principal.subject_id,
            now=runtime.clock.now(),
        )
    await _audit(session, runtime, principal, "export.study.join", "export_study", study_id)
    return await _study_view(session, study_id, member=True)


async def withdraw_from_study(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    study_id: uuid.UUID,
    leaving_clinic_id: uuid.UUID,
) -> None:
    """The admin's clinic withdraws its consent: no export written from now on holds its
    patients.

    Its undelivered exports of the study change with it (one transaction, under the study's
    lock, so no export request slips in between): a queued or running job of another clinic
    goes on without it (a running one is run again: its runner cannot finish it as it was,
    `repository.finish` with `cohort`); a job this clinic requested ends (it may no longer
    export the study); a finished archive not yet downloaded that holds its patients is
    expired, never handed out. Pending invitations stay for the remaining members, unless none
    remain: a study without members is kept (its name and key) but nobody can export or join it.
    """
    clinic_id = _clinic(principal)
    _exists, member = await _locked_membership(session, study_id, clinic_id)
    # Consent is the clinic's own to withdraw: another clinic's membership is "not found", as
    # another clinic's resources are everywhere (never "forbidden": nothing to probe).
    if leaving_clinic_id != clinic_id or not member:
        raise await _no_such_study(session, runtime, principal, "export.study.withdraw", study_id)
    connection = await session.connection()
    await repository.remove_study_clinic(connection, study_id=study_id, clinic_id=clinic_id)
    if not await repository.study_clinics(connection, study_id):
        await repository.remove_invitations(connection, study_id)
    now = runtime.clock.now()
    leaving = str(clinic_id)
    for job in await repository.undelivered_jobs(connection, study_id):
        clinics = msgspec.json.decode(job.clinic_ids, type=list[str])
        if leaving not in clinics:
            continue
        if job.state != "done" and job.requester_clinic_id == clinic_id:
            changed = await repository.cancel_job(
                connection, job.id, failure=WITHDRAWN_FAILURE, now=now
            )
            if changed:
                await runtime.keyring.shred(session, job.id)  # as when a job ends
        elif job.state != "done":
            changed = await repository.narrow_cohort(
                connection,
                job.id,
                was=job.clinic_ids,
                clinic_ids=msgspec.json.encode([c for c in clinics if c != leaving]).decode(),
            )
        else:
            changed = False
        # A runner may have finished the job since it was read (it takes no study lock): its
        # archive holds this clinic's patients and must not go out either.
        changed = changed or await repository.withdraw_result(connection, job.id)
        if changed:
            await _audit(session, runtime, principal, "export.study.withdraw", "export_job", job.id)
    await _audit(session, runtime, principal, "export.study.withdraw", "export_study", study_id)
