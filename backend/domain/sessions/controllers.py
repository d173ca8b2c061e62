"""HTTP routes for treatment sessions, check-in ladders and the patient's due check-ins.

Staff routes are PATIENT-scoped (the middleware checks the patient is in the caller's clinic);
every read or change of patient data is audited (purpose ``treatment``), late in the request.
"""

from datetime import time
from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.treatment import TreatmentCourse
from backend.domain.check_ins import schedule
from backend.domain.check_ins.quiet_hours import QuietHours
from backend.domain.sessions import baselines as course_baselines
from backend.domain.sessions import service
from backend.domain.sessions.completion import complete_unless_held
from backend.domain.sessions.exposure import patient_n2o_exposure
from backend.domain.sessions.schemas import (
    BaselineInput,
    BaselineView,
    CheckInLadder,
    CourseBaselines,
    CourseEnded,
    CourseView,
    DueCheckIns,
    ExposureView,
    ObservationsInput,
    PatientCourses,
    PatientSchedule,
    PatientSessions,
    ScheduleChange,
    ScheduleView,
    SessionCompletion,
    SessionInput,
    SessionReschedule,
    SessionView,
)
from backend.identity.access import Scope, access
from backend.identity.audit_trail import audit
from backend.identity.patients import check_time_zone
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.lib.errors import InvalidInput, NotFound
from backend.lib.preconditions import (
    IF_MATCH_DESCRIPTION,
    etag_headers,
    if_match_versions,
    tag_headers,
)
from backend.state import Runtime

CLINICAL = (Role.CLINICIAN, Role.CLINIC_ADMIN)
# The sessions' GET is a list: each session's entity tag is its `version` there.
_SESSION_TAG = "A session's entity tag is its `version` (listed by `GET .../sessions`)."
# One tag for all of a course's baselines: the rules read them together (`baselines`).
_BASELINES_TAG = "The entity tag is the one `GET .../courses/{course_id}/baselines` serves."


async def _audit(
    db_session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: UUID,
    patient_id: UUID,
) -> None:
    patient = await service.get_patient(db_session, patient_id)
    await audit(
        db_session,
        runtime,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        clinic_id=patient.clinic_id,
        purpose="treatment",
        actor=principal,
    )


async def _view(db_session: AsyncSession, runtime: Runtime, row: object) -> SessionView:
    (view,) = await service.session_views(db_session, runtime.keyring, [row])  # type: ignore[list-item]
    return view


def _idempotency_key(header: str | None) -> str | None:
    if header is None:
        return None
    if not 1 <= len(header) <= 128 or not all("!" <= c <= "~" for c in header):
        raise InvalidInput(
            "Idempotency-Key must be 1-128 visible ASCII characters (a UUID is ideal)"
        )
    return header


def _course_view(course: TreatmentCourse) -> CourseView:
    return CourseView(
        id=course.id,
        patient_id=course.patient_id,
        modality=service.modality_of(course.modality),
        status=course.status,
        protocol_id=course.protocol_id,
        protocol_version=course.protocol_version,
        started_at=course.started_at,
        ended_at=course.ended_at,
        created_at=course.created_at,
    )


class TreatmentSessionController(Controller):
    path = "/api/v1/patients/{patient_id:uuid}"
    tags = ["treatment sessions"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @post(
        "/sessions",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        status_code=201,
        summary="Record a planned session; its check-ins are scheduled in the same transaction",
    )
    async def record(
        self,
        patient_id: FromPath[UUID],
        data: JSONBody[SessionInput],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> SessionView:
        row = await service.record_session(
            db_session,
            runtime.keyring,
            patient_id=patient_id,
            data=data,
            staff_id=principal.subject_id,
            now=runtime.clock.now(),
        )
        view = await _view(db_session, runtime, row)
        await _audit(
            db_session, runtime, principal, "session.create", "session", row.id, patient_id
        )
        return view

    @get("/sessions", opt=access(*CLINICAL, scope=Scope.PATIENT))
    async def list_sessions(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> PatientSessions:
        rows = await service.list_sessions(db_session, patient_id)
        views = await service.session_views(db_session, runtime.keyring, rows)
        await _audit(db_session, runtime, principal, "read", "sessions", patient_id, patient_id)
        return PatientSessions(sessions=views)

    @put(
        "/sessions/{session_id:uuid}/schedule",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="Reschedule a planned session (only its unsent check-ins move)",
        description=f"{IF_MATCH_DESCRIPTION} {_SESSION_TAG}",
    )
    async def reschedule(
        self,
        patient_id: FromPath[UUID],
        session_id: FromPath[UUID],
        data: JSONBody[SessionReschedule],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[SessionView]:
        row = await service.reschedule_session(
            db_session,
            patient_id=patient_id,
            session_id=session_id,
            data=data,
            now=runtime.clock.now(),
            if_match=if_match_versions(if_match),
        )
        view = await _view(db_session, runtime, row)
        await _audit(
            db_session, runtime, principal, "session.reschedule", "session", row.id, patient_id
        )
        return Response(view, headers=tag_headers(view.version))

    @post(
        "/sessions/{session_id:uuid}/cancel",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        status_code=200,
        summary="Cancel a planned session (its unsent check-ins are cancelled)",
    )
    async def cancel(
        self,
        patient_id: FromPath[UUID],
        session_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> SessionView:
        row = await service.cancel_session(
            db_session, patient_id=patient_id, session_id=session_id, now=runtime.clock.now()
        )
        view = await _view(db_session, runtime, row)
        await _audit(
            db_session, runtime, principal, "session.cancel", "session", row.id, patient_id
        )
        return view

    @post(
        "/sessions/{session_id:uuid}/complete",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        status_code=200,
        summary="Record the session as held, with its actual times and observations",
    )
    async def complete(
        self,
        patient_id: FromPath[UUID],
        session_id: FromPath[UUID],
        data: JSONBody[SessionCompletion],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> SessionView:
        row = await complete_unless_held(
            db_session,
            runtime.keyring,
            principal,
            patient_id=patient_id,
            session_id=session_id,
            data=data,
            now=runtime.clock.now(),
        )
        view = await _view(db_session, runtime, row)
        await _audit(
            db_session, runtime, principal, "session.complete", "session", row.id, patient_id
        )
        return view

    @put(
        "/sessions/{session_id:uuid}/observations",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="Record observations (blood pressure, CADSS-6, sedation, acute side effects, "
        "discharge, REMS, notes); the observations given replace those stored",
        description="Send the session's `version` (or this route's last `ETag`) as `If-Match`: "
        "if another clinician changed the session since, nothing is written and the answer is "
        "412, so an entry is never replaced by a stale copy. Without `If-Match` the write is "
        "unconditional.",
    )
    async def observations(
        self,
        patient_id: FromPath[UUID],
        session_id: FromPath[UUID],
        data: JSONBody[ObservationsInput],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[SessionView]:
        row = await service.record_observations(
            db_session,
            runtime.keyring,
            patient_id=patient_id,
            session_id=session_id,
            data=data,
            now=runtime.clock.now(),
            if_match=if_match_versions(if_match),
        )
        view = await _view(db_session, runtime, row)
        await _audit(
            db_session, runtime, principal, "session.observations", "session", row.id, patient_id
        )
        return Response(view, headers=tag_headers(view.version))

    @get(
        "/courses",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="The patient's treatment courses, oldest first",
    )
    async def list_courses(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> PatientCourses:
        await service.get_patient(db_session, patient_id)
        courses = await service.list_courses(db_session, patient_id)
        await _audit(db_session, runtime, principal, "read", "courses", patient_id, patient_id)
        return PatientCourses(courses=[_course_view(c) for c in courses])

    @post(
        "/courses/{course_id:uuid}/end",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        status_code=200,
        summary="End a course: later planned sessions are cancelled, the follow-up is planned",
    )
    async def end_course(
        self,
        patient_id: FromPath[UUID],
        course_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> CourseEnded:
        await service.get_patient(db_session, patient_id)
        ended = await service.end_course(db_session, patient_id, course_id, now=runtime.clock.now())
        await _audit(db_session, runtime, principal, "course.end", "course", course_id, patient_id)
        return CourseEnded(
            course=_course_view(ended.course),
            last_session_id=ended.last_session_id,
            cancelled_session_ids=list(ended.cancelled_session_ids),
        )

    @get(
        "/courses/{course_id:uuid}/baselines",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="The course's baselines (B0) as the alert rules read them: recorded or derived",
        description="Its `ETag` is the `If-Match` of recording or forgetting one of them.",
    )
    async def baselines(
        self,
        patient_id: FromPath[UUID],
        course_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[CourseBaselines]:
        result = await course_baselines.course_baselines(
            db_session, runtime.keyring, patient_id=patient_id, course_id=course_id
        )
        await _audit(
            db_session, runtime, principal, "read", "course_baselines", course_id, patient_id
        )
        return Response(result, headers=etag_headers(result))

    @put(
        "/courses/{course_id:uuid}/baselines/{instrument_id:str}",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="Record the course's baseline (B0) of one instrument: a stored response or answers",
        description=f"{_BASELINES_TAG} {IF_MATCH_DESCRIPTION} The answer's `ETag` is the "
        "baselines' tag after the change.",
    )
    async def record_baseline(
        self,
        patient_id: FromPath[UUID],
        course_id: FromPath[UUID],
        instrument_id: FromPath[str],
        data: JSONBody[BaselineInput],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False)
        ] = None,
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[BaselineView]:
        versions = if_match_versions(if_match)
        view = await course_baselines.record_baseline(
            db_session,
            runtime.keyring,
            patient_id=patient_id,
            course_id=course_id,
            instrument_id=instrument_id,
            data=data,
            staff_id=principal.subject_id,
            idempotency_key=_idempotency_key(idempotency_key),
            now=runtime.clock.now(),
            if_match=versions,
        )
        # The tag the next GET of the course's baselines shows, for a further change.
        after = await course_baselines.course_baselines(
            db_session, runtime.keyring, patient_id=patient_id, course_id=course_id
        )
        await _audit(
            db_session,
            runtime,
            principal,
            "course_baseline.record",
            "course_baseline",
            course_id,
            patient_id,
        )
        return Response(view, headers=etag_headers(after))

    @delete(
        "/courses/{course_id:uuid}/baselines/{instrument_id:str}",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="Forget the recorded baseline of one instrument (B0 is derived again)",
        description=f"{_BASELINES_TAG} With `If-Match`, nothing is forgotten when someone "
        "changed the course's baselines since they were read (412).",
    )
    async def remove_baseline(
        self,
        patient_id: FromPath[UUID],
        course_id: FromPath[UUID],
        instrument_id: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> None:
        versions = if_match_versions(if_match)
        removed = await course_baselines.remove_baseline(
            db_session,
            runtime.keyring,
            patient_id=patient_id,
            course_id=course_id,
            instrument_id=instrument_id,
            now=runtime.clock.now(),
            if_match=versions,
        )
        if not removed:
            raise NotFound("no recorded baseline of this instrument")
        await _audit(
            db_session,
            runtime,
            principal,
            "course_baseline.delete",
            "course_baseline",
            course_id,
            patient_id,
        )

    @get(
        "/check-ins",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="The patient's check-in ladder: what was sent, opened, answered, missed",
    )
    async def check_in_ladder(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> CheckInLadder:
        await service.get_patient(db_session, patient_id)
        rows = await schedule.ladder(db_session, patient_id)
        await _audit(db_session, runtime, principal, "read", "check_ins", patient_id, patient_id)
        return CheckInLadder(check_ins=rows)

    @get(
        "/n2o-exposure",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="N2O exposure: rolling 28-day inhalation hours and shortest interval (§5.1)",
    )
    async def exposure(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> ExposureView:
        await service.get_patient(db_session, patient_id)
        now = runtime.clock.now()
        exposure = await patient_n2o_exposure(db_session, patient_id, as_of=now)
        await _audit(db_session, runtime, principal, "read", "n2o_exposure", patient_id, patient_id)
        interval = exposure.shortest_interval
        return ExposureView(
            as_of=now,
            cumulative_inhalation_hours_28d=exposure.cumulative_inhalation.total_seconds() / 3600,
            peak_cumulative_inhalation_hours_28d=(
                exposure.peak_cumulative_inhalation.total_seconds() / 3600
            ),
            shortest_interval_hours=None if interval is None else interval.total_seconds() / 3600,
            haematological_monitoring_due=exposure.haematological_monitoring_due,
            triggers=[t.kind for t in exposure.triggers],
        )

    @get(
        "/schedule",
        opt=access(Role.PATIENT, *CLINICAL, scope=Scope.PATIENT),
        summary="The patient's time zone and quiet hours (its ETag is the PUT's If-Match)",
    )
    async def get_schedule(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[PatientSchedule]:
        current = await service.patient_schedule(db_session, patient_id)
        await _audit(db_session, runtime, principal, "read", "schedule", patient_id, patient_id)
        return Response(current, headers=etag_headers(current))

    @put(
        "/schedule",
        opt=access(Role.PATIENT, *CLINICAL, scope=Scope.PATIENT),
        summary="Change the patient's time zone and/or quiet hours; unsent check-ins move",
        description=IF_MATCH_DESCRIPTION,
    )
    async def change_schedule(
        self,
        patient_id: FromPath[UUID],
        data: JSONBody[ScheduleChange],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[ScheduleView]:
        versions = if_match_versions(if_match)
        if data.time_zone is not None:
            check_time_zone(data.time_zone, "/time_zone")
        quiet = None
        if (data.quiet_hours_start is None) != (data.quiet_hours_end is None):
            raise InvalidInput("give both quiet_hours_start and quiet_hours_end, or neither")
        if data.quiet_hours_start is not None and data.quiet_hours_end is not None:
            quiet = QuietHours(
                start=time.fromisoformat(data.quiet_hours_start),
                end=time.fromisoformat(data.quiet_hours_end),
            )
        patient, quiet_hours, moved = await service.change_patient_schedule(
            db_session,
            patient_id=patient_id,
            time_zone=data.time_zone,
            quiet_hours=quiet,
            now=runtime.clock.now(),
            if_match=versions,
        )
        await _audit(
            db_session, runtime, principal, "patient.schedule", "patient", patient_id, patient_id
        )
        saved = service.schedule_of(patient, quiet_hours)
        view = ScheduleView(
            time_zone=saved.time_zone,
            quiet_hours_start=saved.quiet_hours_start,
            quiet_hours_end=saved.quiet_hours_end,
            check_ins_moved=moved,
        )
        return Response(view, headers=etag_headers(saved))


class PatientCheckInController(Controller):
    path = "/api/v1/check-ins"
    tags = ["patient app"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get(
        "",
        opt=access(Role.PATIENT, scope=Scope.SELF),
        summary="What is due now and next, with the questionnaires to answer and their windows",
    )
    async def due(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> DueCheckIns:
        patient_id = principal.subject_id
        result = await schedule.due_for_patient(db_session, patient_id, now=runtime.clock.now())
        await _audit(db_session, runtime, principal, "read", "check_ins", patient_id, patient_id)
        return result
