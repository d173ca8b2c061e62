"""The alert inbox: unresolved alerts by severity and age with their service-level countdown,
filters, acknowledge and resolve. The table body is also served alone (``/inbox/rows``) for the
page's poll, so new urgent alerts appear without a reload."""

import uuid
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard import queries
from backend.dashboard.alert_views import (
    KIND_LABELS,
    OUTCOME_LABELS,
    SEVERITIES,
    InboxFilter,
    alert_row,
    describe_minutes,
    inbox_alerts,
)
from backend.dashboard.errors import safe_next
from backend.dashboard.pages import DASHBOARD_ROLES, page, time_context
from backend.dashboard.patients import patient_names
from backend.domain.alerts import lifecycle
from backend.domain.alerts.schemas import AlertStatus, ResolveRequest
from backend.identity.access import Scope, access
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.lib.errors import InvalidInput
from backend.state import Runtime

_CLINICAL: Final = access(*DASHBOARD_ROLES, scope=Scope.CLINIC)
# Seconds between the inbox's polls for new alerts (the page reads it from a data attribute).
POLL_SECONDS: Final = 10

SeverityQuery = Annotated[list[str] | None, QueryParameter(name="severity", required=False)]
StatusQuery = Annotated[str | None, QueryParameter(name="status", required=False)]
KindQuery = Annotated[str | None, QueryParameter(name="kind", required=False)]


def inbox_filter(severity: list[str] | None, status: str | None, kind: str | None) -> InboxFilter:
    """The filter form's choices; anything unknown is ignored rather than refused."""
    severities = tuple(s for s in SEVERITIES if severity and s in severity)
    choices: dict[str, tuple[AlertStatus, ...]] = {
        "open": ("open",),
        "acknowledged": ("acknowledged",),
    }
    statuses = choices.get(status or "", ("open", "acknowledged"))
    return InboxFilter(
        statuses=statuses,
        severities=severities,
        kind=kind if kind in KIND_LABELS else None,
    )


async def _zone(principal: Principal, db_session: AsyncSession) -> ZoneInfo:
    assert principal.clinic_id is not None  # the access rule's clinic scope
    return await queries.clinic_zone(await db_session.connection(), principal.clinic_id)


class ResolveForm(msgspec.Struct, kw_only=True):
    outcome: str = ""
    note: str = ""
    back: str = ""


class AcknowledgeForm(msgspec.Struct, kw_only=True):
    back: str = ""


class DashboardInboxController(Controller):
    path = "/"
    dependencies = PRINCIPAL_DEPENDENCIES

    async def _rows(
        self,
        principal: Principal,
        runtime: Runtime,
        db_session: AsyncSession,
        chosen: InboxFilter,
    ) -> list[Any]:
        now = runtime.clock.now()
        alerts = await inbox_alerts(db_session, principal, chosen, now=now)
        names = await patient_names(db_session, runtime, list({a.patient_id for a in alerts}))
        return [alert_row(a, names.get(a.patient_id, "Patient"), now) for a in alerts]

    @get("/", opt=_CLINICAL, name="dashboard-inbox")
    async def inbox(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        severity: SeverityQuery = None,
        status: StatusQuery = None,
        kind: KindQuery = None,
    ) -> Template:
        chosen = inbox_filter(severity, status, kind)
        rows = await self._rows(principal, runtime, db_session, chosen)
        return page(
            "inbox.html",
            principal,
            current="inbox",
            zone=await _zone(principal, db_session),
            rows=rows,
            chosen=chosen,
            severities=SEVERITIES,
            kinds=KIND_LABELS,
            outcomes=OUTCOME_LABELS,
            describe_minutes=describe_minutes,
            poll_seconds=POLL_SECONDS,
            now=runtime.clock.now(),
        )

    @get("/inbox/rows", opt=_CLINICAL, name="dashboard-inbox-rows")
    async def inbox_rows(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        severity: SeverityQuery = None,
        status: StatusQuery = None,
        kind: KindQuery = None,
    ) -> Template:
        chosen = inbox_filter(severity, status, kind)
        rows = await self._rows(principal, runtime, db_session, chosen)
        return Template(
            template_name="_inbox_rows.html",
            context={
                **time_context(await _zone(principal, db_session)),
                "rows": rows,
                "outcomes": OUTCOME_LABELS,
                "describe_minutes": describe_minutes,
            },
        )

    @post("/alerts/{alert_id:uuid}/acknowledge", opt=_CLINICAL, status_code=303)
    async def acknowledge(
        self,
        alert_id: FromPath[uuid.UUID],
        data: URLEncodedBody[AcknowledgeForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        await lifecycle.acknowledge(db_session, principal, alert_id, now=runtime.clock.now())
        return Redirect(path=safe_next(data.back), status_code=HTTP_303_SEE_OTHER)

    @post("/alerts/{alert_id:uuid}/resolve", opt=_CLINICAL, status_code=303)
    async def resolve(
        self,
        alert_id: FromPath[uuid.UUID],
        data: URLEncodedBody[ResolveForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        try:
            request = msgspec.convert(
                {"outcome": data.outcome, "note": data.note.strip()}, ResolveRequest
            )
        except msgspec.ValidationError:
            raise InvalidInput("choose an outcome and write a note to resolve an alert") from None
        await lifecycle.resolve(
            db_session, runtime.keyring, principal, alert_id, request, now=runtime.clock.now()
        )
        return Redirect(path=safe_next(data.back), status_code=HTTP_303_SEE_OTHER)
