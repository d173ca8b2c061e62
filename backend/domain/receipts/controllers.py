"""The app's receipts route: "this notification arrived" / "the patient opened it"."""

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.receipts import service
from backend.identity.access import Scope, access
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.state import Runtime


class ReceiptInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    event: Literal["received", "opened"]


class ReceiptView(msgspec.Struct, frozen=True, kw_only=True):
    message_id: UUID
    check_in_id: str | None
    received_at: datetime | None
    opened_at: datetime | None


class NotificationReceiptController(Controller):
    path = "/api/v1/notifications"
    tags = ["patient app"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @post(
        "/{message_id:uuid}/receipts",
        opt=access(Role.PATIENT, scope=Scope.SELF),
        status_code=200,
        summary="Report that a notification was received or opened (idempotent; the push "
        "payload's message_id)",
    )
    async def report(
        self,
        message_id: FromPath[UUID],
        data: JSONBody[ReceiptInput],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> ReceiptView:
        check_in_id, first = await service.record_receipt(
            db_session,
            patient_id=principal.subject_id,
            message_id=message_id,
            event=data.event,
            now=runtime.clock.now(),
        )
        return ReceiptView(
            message_id=message_id,
            check_in_id=check_in_id,
            received_at=first.received_at,
            opened_at=first.opened_at,
        )
