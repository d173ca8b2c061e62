"""Staff tasks over HTTP: the clinic's open follow-ups (the last rung of channel fallback) and
marking one done. Clinic-scoped: staff see and complete only their own clinic's tasks."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.fallback.repository import TASKS
from backend.identity.access import Scope, access
from backend.identity.audit_trail import audit
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.lib.errors import NotFound
from backend.state import Runtime

CLINICAL = (Role.CLINICIAN, Role.CLINIC_ADMIN)


class TaskView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    kind: str
    patient_id: UUID
    check_in_id: UUID | None
    created_at: datetime
    completed_at: datetime | None
    completed_by: UUID | None


class TaskList(msgspec.Struct, frozen=True, kw_only=True):
    tasks: list[TaskView]


def _view(row: object) -> TaskView:
    return TaskView(
        id=row.id,  # type: ignore[attr-defined]
        kind=row.kind,  # type: ignore[attr-defined]
        patient_id=row.patient_id,  # type: ignore[attr-defined]
        check_in_id=row.check_in_id,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        completed_at=row.completed_at,  # type: ignore[attr-defined]
        completed_by=row.completed_by,  # type: ignore[attr-defined]
    )


class StaffTaskController(Controller):
    path = "/api/v1/clinic/tasks"
    tags = ["staff tasks"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get(
        "",
        opt=access(*CLINICAL, scope=Scope.CLINIC),
        summary="The clinic's follow-up tasks (patients who could not be reached), open first",
    )
    async def list_tasks(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        include_done: Annotated[bool, QueryParameter(required=False)] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> TaskList:
        connection = await db_session.connection()
        statement = select(TASKS).where(TASKS.c.clinic_id == principal.clinic_id)
        if not include_done:
            statement = statement.where(TASKS.c.completed_at.is_(None))
        rows = await connection.execute(
            statement.order_by(TASKS.c.completed_at.is_not(None), TASKS.c.created_at).limit(limit)
        )
        await audit(
            db_session,
            runtime,
            action="read",
            resource_type="staff_tasks",
            resource_id=None,
            clinic_id=principal.clinic_id,
            purpose="treatment",
            actor=principal,
        )
        return TaskList(tasks=[_view(row) for row in rows.all()])

    @post(
        "/{task_id:uuid}/complete",
        opt=access(*CLINICAL, scope=Scope.CLINIC),
        status_code=200,
        summary="Mark a follow-up task done (idempotent: the first completion is kept)",
    )
    async def complete(
        self,
        task_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> TaskView:
        connection = await db_session.connection()
        mine = (TASKS.c.id == task_id) & (TASKS.c.clinic_id == principal.clinic_id)
        await connection.execute(
            update(TASKS)
            .where(mine, TASKS.c.completed_at.is_(None))
            .values(completed_at=runtime.clock.now(), completed_by=principal.subject_id)
        )
        row = (await connection.execute(select(TASKS).where(mine))).first()
        if row is None:
            raise NotFound("no such task in this clinic")
        await audit(
            db_session,
            runtime,
            action="staff_task.complete",
            resource_type="staff_task",
            resource_id=task_id,
            clinic_id=principal.clinic_id,
            purpose="treatment",
            actor=principal,
        )
        return _view(row)
