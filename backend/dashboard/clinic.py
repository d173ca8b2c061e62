"""Clinic views: today's sessions, patients who missed check-ins, patients on an N2O hold."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard import queries
from backend.dashboard.alert_views import patients_on_hold
from backend.dashboard.pages import DASHBOARD_ROLES, page
from backend.dashboard.patient_view import MODALITY_LABELS
from backend.dashboard.patients import audit_as_api, patient_names
from backend.identity.access import Scope, access
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.state import Runtime

# Misses older than this are history, not a worklist.
MISSED_WINDOW = timedelta(days=14)


def day_bounds(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Start and end of ``now``'s calendar day in ``zone`` (DST days are 23 or 25 hours)."""
    local = now.astimezone(zone).date()
    start = datetime.combine(local, time(0), tzinfo=zone)
    end = datetime.combine(local + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


class DashboardClinicController(Controller):
    path = "/clinic"
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/", opt=access(*DASHBOARD_ROLES, scope=Scope.CLINIC), name="dashboard-clinic")
    async def today(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        assert principal.clinic_id is not None
        now = runtime.clock.now()
        connection = await db_session.connection()
        # "Today" is the clinic's calendar day, in its own zone.
        zone = await queries.clinic_zone(connection, principal.clinic_id)
        start, end = day_bounds(now, zone)
        sessions = await queries.sessions_between(connection, principal.clinic_id, start, end)
        missed = await queries.patients_with_missed_check_ins(
            connection, principal.clinic_id, now - MISSED_WINDOW
        )
        holds = await patients_on_hold(db_session, principal.clinic_id)
        ids = list(
            {r.patient_id for r in sessions}
            | {r.patient_id for r in missed}
            | {h.patient_id for h in holds}
        )
        names = await patient_names(db_session, runtime, ids)
        await audit_as_api(
            db_session,
            runtime,
            principal,
            action="patient.list",
            resource_type="patient",
            resource_id=None,
        )
        return page(
            "clinic.html",
            principal,
            current="clinic",
            zone=zone,
            day=start,
            sessions=sessions,
            missed=missed,
            holds=holds,
            names=names,
            modality_labels=MODALITY_LABELS,
        )
