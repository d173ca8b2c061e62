"""The patient list and the patient page (trajectories, sessions, check-ins, alerts, consents).

The consent form records what the patient agreed to, through the API's service (same checks,
effects and audit rows: withdrawing monitoring cancels every open check-in at once, giving it
again plans them again). It carries the consents' entity tag as the API's If-Match, which is
never optional here either: a save from a page someone else's change outdated is refused."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Response, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard import queries
from backend.dashboard.alert_views import OUTCOME_LABELS, patient_alert_panel
from backend.dashboard.observations import (
    SEVERITY_CHOICES,
    ObservationFields,
    observation_fields,
    observations_input,
)
from backend.dashboard.pages import DASHBOARD_ROLES, form_time, local_time, page, refusal_reason
from backend.dashboard.patient_view import MODALITY_LABELS, load_patient_page
from backend.dashboard.plots import trajectory_svg
from backend.domain.alerts import holds
from backend.domain.sessions import service as sessions_service
from backend.domain.sessions.completion import complete_unless_held
from backend.domain.sessions.schemas import SessionCompletion, SessionInput
from backend.identity import consent, patients
from backend.identity.access import Scope, access
from backend.identity.audit_trail import audit
from backend.identity.identifiers import FieldSealer
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.schemas import ConsentChange
from backend.lib.errors import DomainError, InvalidInput, PreconditionRequired
from backend.lib.preconditions import entity_tag
from backend.state import Runtime


async def audit_as_api(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    *,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None,
) -> None:
    """The audit row the JSON API writes for the same read or change (same action names)."""
    await audit(
        session,
        runtime,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        clinic_id=principal.clinic_id,
        purpose="treatment",
        actor=principal,
    )


async def patient_names(
    session: AsyncSession, runtime: Runtime, patient_ids: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Decrypted display names (one data-key read per patient; the caller audits the list)."""
    names: dict[uuid.UUID, str] = {}
    rows = await queries.patients_by_id(await session.connection(), patient_ids)
    for row in rows:
        if row.name_ciphertext is None:
            continue
        sealer = await FieldSealer.open(
            runtime, session, row.id, "patients", row.id, for_writing=False
        )
        names[row.id] = sealer.unseal("name_ciphertext", row.name_ciphertext) or ""
    return names


async def patient_page(
    db_session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    refused: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    """The patient page; ``refused``: (section, reason) when a form's change was not saved."""
    now = runtime.clock.now()
    panel = await patient_alert_panel(db_session, principal, patient_id, now=now)
    content = await load_patient_page(
        db_session, runtime.keyring, patient_id, alerts=panel.marks, now=now
    )
    # Audited last: the read of identifiers (patient.read, inside read_patient), then the
    # same consent, score and response reads the API records.
    view = await patients.read_patient(db_session, runtime, principal, patient_id)
    consents = await consent.read_consent(db_session, runtime, principal, patient_id)
    for action, resource_type in (
        ("score.read", "patient_scores"),
        ("response.read", "patient_responses"),
    ):
        await audit_as_api(
            db_session,
            runtime,
            principal,
            action=action,
            resource_type=resource_type,
            resource_id=str(patient_id),
        )
    # Held sessions' observations, decrypted for their forms (audited as the API's session list).
    # Read through the ORM only when the page's session table (Core) shows a held session: the
    # views need the ciphertext columns the table leaves out.
    held = (
        [
            r
            for r in await sessions_service.list_sessions(db_session, patient_id)
            if r.status == "completed"
        ]
        if any(line.status == "completed" for line in content.session_lines)
        else []
    )
    observed: dict[str, ObservationFields] = {}
    patient_zone = ZoneInfo(view.time_zone)
    if held:
        for session_view in await sessions_service.session_views(db_session, runtime.keyring, held):
            observed[str(session_view.id)] = observation_fields(session_view, patient_zone)
        await audit_as_api(
            db_session,
            runtime,
            principal,
            action="read",
            resource_type="sessions",
            resource_id=str(patient_id),
        )
    zone = await queries.clinic_zone(await db_session.connection(), view.clinic_id)
    plots: list[dict[str, Any]] = [
        {"svg": trajectory_svg(t.trajectory, zone), "rows": t.rows, "title": t.trajectory.title}
        for t in content.trajectories
    ]
    return page(
        "patient.html",
        principal,
        current="patients",
        status_code=status_code,
        patient=view,
        consents=consents,
        consent_tag=entity_tag(consents),
        zone=zone,
        patient_zone=patient_zone,
        form_time=form_time,
        observed=observed,
        side_effect_severities=SEVERITY_CHOICES,
        refused_in=refused[0] if refused else None,
        refused_reason=refused[1] if refused else None,
        plots=plots,
        content=content,
        alerts=panel,
        modality_labels=MODALITY_LABELS,
        outcomes=OUTCOME_LABELS,
        back=f"/dashboard/patients/{patient_id}",
        now=now,
    )


async def _then_back(
    section: str,
    change: Callable[[], Awaitable[object]],
    db_session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    patient_id: uuid.UUID,
) -> Response[Any]:
    """Make a form's change, then back to its section of the patient page (Post/Redirect/Get).
    Refused for what was entered or an outdated page: the page again, with the reason beside the
    form; other failures (401, 403, 404) are not the form's: the dashboard's error page."""
    try:
        await change()
    except DomainError as error:
        if error.status_code not in _FORM_REFUSALS:
            raise
        # Nothing of the refused change may be committed with the page's audit rows.
        await db_session.rollback()
        return await patient_page(
            db_session,
            runtime,
            principal,
            patient_id,
            refused=(section, refusal_reason(error)),
            status_code=error.status_code,
        )
    return Redirect(
        path=f"/dashboard/patients/{patient_id}#{section}", status_code=HTTP_303_SEE_OTHER
    )


async def _time_zone(db_session: AsyncSession, patient_id: uuid.UUID) -> ZoneInfo:
    """The patient's time zone, in which the session forms' times are entered."""
    return ZoneInfo((await sessions_service.get_patient(db_session, patient_id)).time_zone)


def session_input(form: "SessionForm", zone: ZoneInfo) -> SessionInput:
    """The API's `SessionInput` from the form (the dose box of the chosen treatment only)."""
    fields: dict[str, Any] = {
        "modality": form.modality,
        "planned_start": local_time(form.planned_start, zone, "start"),
        "minutes": form.minutes.strip(),
        "last_in_course": form.last_in_course == "on",
    }
    dose = {
        "n2o": "n2o_concentration_percent",
        "iv_ketamine": "ketamine_mg_per_kg",
        "esketamine": "esketamine_mg",
    }.get(form.modality)
    if dose is not None and getattr(form, dose).strip():
        fields[dose] = getattr(form, dose).strip()
    try:
        return msgspec.convert(fields, SessionInput, strict=False)
    except msgspec.ValidationError as error:
        raise InvalidInput(f"the session was not recorded ({error})") from None


class SessionForm(msgspec.Struct, kw_only=True):
    modality: str = ""
    planned_start: str = ""
    minutes: str = ""
    n2o_concentration_percent: str = ""
    ketamine_mg_per_kg: str = ""
    esketamine_mg: str = ""
    last_in_course: str = ""


class HeldForm(msgspec.Struct, kw_only=True):
    started_at: str = ""
    ended_at: str = ""
    override_n2o_hold: str = ""


class ConsentForm(msgspec.Struct, kw_only=True):
    monitoring_consent: str = ""
    research_consent: str = ""
    version: str = ""  # entity tag of the consents the form was drawn from (If-Match)


# A form's change refused for what was entered or because the page was outdated: shown on the
# page beside the form (anything else is the dashboard's error page).
_FORM_REFUSALS: Final = frozenset({409, 412, 422, 428})


class DashboardPatientController(Controller):
    path = "/patients"
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/", opt=access(*DASHBOARD_ROLES, scope=Scope.CLINIC), name="dashboard-patients")
    async def list_patients(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        assert principal.clinic_id is not None
        rows = await queries.clinic_patients(await db_session.connection(), principal.clinic_id)
        names = await patient_names(db_session, runtime, [row.id for row in rows])
        await audit_as_api(
            db_session,
            runtime,
            principal,
            action="patient.list",
            resource_type="patient",
            resource_id=None,
        )
        return page(
            "patients.html",
            principal,
            current="patients",
            patients=[
                {"id": row.id, "name": names.get(row.id, "—"), "status": row.status} for row in rows
            ],
        )

    @get(
        "/{patient_id:uuid}",
        opt=access(*DASHBOARD_ROLES, scope=Scope.PATIENT),
        name="dashboard-patient",
    )
    async def patient(
        self,
        patient_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        return await patient_page(db_session, runtime, principal, patient_id)

    @post(
        "/{patient_id:uuid}/n2o-hold/clear",
        opt=access(*DASHBOARD_ROLES, scope=Scope.PATIENT),
        status_code=303,
    )
    async def clear_n2o_hold(
        self,
        patient_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        """The API's ``POST /api/v1/patients/{id}/n2o-hold/clear``: the same service and audit."""
        await holds.clear_hold(db_session, principal, patient_id, now=runtime.clock.now())
        return Redirect(path=f"/dashboard/patients/{patient_id}", status_code=HTTP_303_SEE_OTHER)

    @post(
        "/{patient_id:uuid}/consent",
        opt=access(*DASHBOARD_ROLES, scope=Scope.PATIENT),
        status_code=303,
    )
    async def change_consent(
        self,
        patient_id: FromPath[uuid.UUID],
        data: URLEncodedBody[ConsentForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The API's ``PUT /api/v1/patients/{id}/consent``: the same service and audit, always
        from the version the page showed (its If-Match is never optional)."""

        async def change() -> None:
            if not data.version:
                raise PreconditionRequired(
                    "the form did not say which version of the consents it was drawn from; "
                    "reload the page and record the consents again"
                )
            await consent.change_consent(
                db_session,
                runtime,
                principal,
                patient_id,
                ConsentChange(
                    monitoring_consent=data.monitoring_consent == "on",
                    research_consent=data.research_consent == "on",
                ),
                if_match=frozenset({data.version}),
            )

        return await _then_back("consent", change, db_session, runtime, principal, patient_id)

    @post(
        "/{patient_id:uuid}/sessions",
        opt=access(*DASHBOARD_ROLES, scope=Scope.PATIENT),
        status_code=303,
    )
    async def record_session(
        self,
        patient_id: FromPath[uuid.UUID],
        data: URLEncodedBody[SessionForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The API's ``POST /api/v1/patients/{id}/sessions``: its check-ins are planned in the
        same transaction."""

        async def record() -> None:
            row = await sessions_service.record_session(
                db_session,
                runtime.keyring,
                patient_id=patient_id,
                data=session_input(data, await _time_zone(db_session, patient_id)),
                staff_id=principal.subject_id,
                now=runtime.clock.now(),
            )
            await audit_as_api(
                db_session,
                runtime,
                principal,
                action="session.create",
                resource_type="session",
                resource_id=row.id,
            )

        return await _then_back("sessions", record, db_session, runtime, principal, patient_id)

    @post(
        "/{patient_id:uuid}/sessions/{session_id:uuid}/complete",
        opt=access(*DASHBOARD_ROLES, scope=Scope.PATIENT),
        status_code=303,
    )
    async def complete_session(
        self,
        patient_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        data: URLEncodedBody[HeldForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The API's ``POST .../sessions/{id}/complete`` (the N2O hold rule included): the
        check-in ladder is re-timed from the session's end."""

        async def complete() -> None:
            zone = await _time_zone(db_session, patient_id)
            row = await complete_unless_held(
                db_session,
                runtime.keyring,
                principal,
                patient_id=patient_id,
                session_id=session_id,
                data=SessionCompletion(
                    started_at=local_time(data.started_at, zone, "started"),
                    ended_at=local_time(data.ended_at, zone, "ended"),
                    override_n2o_hold=data.override_n2o_hold == "on",
                ),
                now=runtime.clock.now(),
            )
            await audit_as_api(
                db_session,
                runtime,
                principal,
                action="session.complete",
                resource_type="session",
                resource_id=row.id,
            )

        return await _then_back("sessions", complete, db_session, runtime, principal, patient_id)

    @post(
        "/{patient_id:uuid}/sessions/{session_id:uuid}/observations",
        opt=access(*DASHBOARD_ROLES, scope=Scope.PATIENT),
        status_code=303,
    )
    async def record_observations(
        self,
        request: Request[Any, Any, Any],
        patient_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The API's ``PUT .../sessions/{id}/observations``: what the form carries replaces the
        stored observations, always from the version the page showed (If-Match, never
        optional, so a colleague's entry is not replaced by this page's older copy)."""
        form = await request.form()
        fields = {key: [str(v) for v in form.getall(key)] for key in form}

        async def record() -> None:
            version = (fields.get("version") or [""])[0]
            if not version:
                raise PreconditionRequired(
                    "the form did not say which version of the session it was drawn from; "
                    "reload the page and enter the observations again"
                )
            data = observations_input(fields, await _time_zone(db_session, patient_id))
            row = await sessions_service.record_observations(
                db_session,
                runtime.keyring,
                patient_id=patient_id,
                session_id=session_id,
                data=data,
                now=runtime.clock.now(),
                if_match=frozenset({version}),
            )
            await audit_as_api(
                db_session,
                runtime,
                principal,
                action="session.observations",
                resource_type="session",
                resource_id=row.id,
            )

        return await _then_back(
            f"observations-{session_id}", record, db_session, runtime, principal, patient_id
        )
