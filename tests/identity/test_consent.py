"""A patient's consents through the running app (both databases): staff record and change them
from the version they read (If-Match required), the patient can withdraw but never give one,
withdrawing monitoring stops it at once (check-ins cancelled, fallback watches closed, answers
and app sessions refused) and giving it again plans the patient's check-ins again."""

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from backend.db.models.audit_event import AuditLogEntry
from backend.db.models.patient import Patient
from backend.db.models.treatment import CheckIn
from backend.domain.check_ins import repository
from backend.domain.fallback import repository as fallback
from backend.lib.logging import JsonFormatter
from questionnaires.registry import get_instrument
from tests.alerts.stored import outbox_for
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    PatientAccount,
    StaffAccount,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock

CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]
AUDIT = AuditLogEntry.__table__  # type: ignore[attr-defined]
PROBLEM = "application/problem+json"
OPEN = {"pending", "merged", "sent"}
PHQ9 = get_instrument("phq9")


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    world = await build_world(api, clock)
    # These tests are the timers: nothing is claimed or sent behind their back.
    await runtime_of(api).timers.shutdown()
    return world


def _url(patient: PatientAccount) -> str:
    return f"/api/v1/patients/{patient.id}/consent"


async def _read(
    api: AsyncTestClient[Litestar],  # noqa: F811
    who: StaffAccount,
    patient: PatientAccount,
) -> tuple[dict[str, Any], str]:
    read = await api.get(_url(patient), headers=who.headers)
    assert read.status_code == 200, read.text
    return read.json(), read.headers["etag"]


async def _put(
    api: AsyncTestClient[Litestar],  # noqa: F811
    who: StaffAccount,
    patient: PatientAccount,
    *,
    monitoring: bool,
    research: bool,
) -> dict[str, Any]:
    _, tag = await _read(api, who, patient)
    saved = await api.put(
        _url(patient),
        headers={**who.headers, "If-Match": tag},
        json={"monitoring_consent": monitoring, "research_consent": research},
    )
    assert saved.status_code == 200, saved.text
    body: dict[str, Any] = saved.json()
    return body


async def _withdraw_in_app(
    api: AsyncTestClient[Litestar],  # noqa: F811
    patient: PatientAccount,
) -> Any:
    """The patient withdraws both consents from the app; the 200 response."""
    stopped = await api.put(
        "/api/v1/me/consent",
        headers=patient.headers,
        json={"monitoring_consent": False, "research_consent": False},
    )
    assert stopped.status_code == 200, stopped.text
    return stopped


async def _alerts_of_kind(
    api: AsyncTestClient[Litestar],  # noqa: F811
    who: StaffAccount,
    patient: PatientAccount,
    kind: str,
) -> list[dict[str, Any]]:
    listed = await api.get(f"/api/v1/alerts?patient={patient.id}", headers=who.headers)
    assert listed.status_code == 200, listed.text
    return [a for a in listed.json()["items"] if a["kind"] == kind]


async def _patient_row(api: AsyncTestClient[Litestar], patient_id: uuid.UUID) -> Patient:  # noqa: F811
    async with runtime_of(api).require_sessionmaker()() as session:
        row = await session.get(Patient, patient_id)
        assert row is not None
        return row


async def _audits(api: AsyncTestClient[Litestar], patient_id: uuid.UUID) -> list[str]:  # noqa: F811
    async with runtime_of(api).require_engine().connect() as connection:
        rows = await connection.execute(
            select(AUDIT.c.action)
            .where(AUDIT.c.resource_id == str(patient_id))
            .order_by(AUDIT.c.at, AUDIT.c.id)
        )
        return [str(action) for action in rows.scalars().all()]


async def _rows(api: AsyncTestClient[Litestar], patient_id: uuid.UUID) -> dict[uuid.UUID, Any]:  # noqa: F811
    async with runtime_of(api).require_engine().connect() as connection:
        return {r.id: r for r in await repository.rows_for_patient(connection, patient_id)}


async def _plan_session(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    patient: PatientAccount,
    start: datetime,
) -> None:
    created = await api.post(
        f"/api/v1/patients/{patient.id}/sessions",
        headers=people.staff["clinician_a"].headers,
        json={
            "modality": "n2o",
            "planned_start": start.isoformat(),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    assert created.status_code == 201, created.text


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _set_status(
    api: AsyncTestClient[Litestar],  # noqa: F811
    check_in_id: uuid.UUID,
    status: str,
    **values: Any,
) -> None:
    """Stands in for the timers and the app (sent, answered)."""
    async with runtime_of(api).require_engine().begin() as connection:
        await connection.execute(
            update(CHECK_INS).where(CHECK_INS.c.id == check_in_id).values(status=status, **values)
        )


async def _watches(api: AsyncTestClient[Litestar], ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:  # noqa: F811
    async with runtime_of(api).require_engine().connect() as connection:
        rows = await connection.execute(
            select(fallback.TABLE).where(fallback.TABLE.c.check_in_id.in_(ids))
        )
        return {r.check_in_id: r for r in rows.all()}


def _phq9(item9: int = 0) -> dict[str, Any]:
    values = {**dict.fromkeys(range(1, 9), 1), 9: item9}
    return {
        "instrumentId": "phq9",
        "instrumentVersion": PHQ9.version,
        "answers": [{"linkId": f"phq9-{item}", "value": v} for item, v in values.items()],
    }


async def test_staff_read_and_change_consent_from_the_version_they_read(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician, patient = people.staff["clinician_a"], people.patients["patient_a"]
    shown, tag = await _read(api, clinician, patient)
    assert shown["monitoring_consent"] is True
    assert shown["research_consent"] is False
    assert shown["status"] == "active"
    again, same = await _read(api, people.staff["admin_a"], patient)
    assert (again, same) == (shown, tag)

    clock.advance(minutes=5)
    saved = await api.put(
        _url(patient),
        headers={**clinician.headers, "If-Match": tag},
        json={"monitoring_consent": True, "research_consent": True},
    )
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["research_consent"] is True
    assert body["monitoring_consent"] is True
    assert body["status"] == "active"
    assert body["check_ins_cancelled"] == body["check_ins_planned"] == 0
    assert datetime.fromisoformat(body["consent_updated_at"]) == clock.now()
    # The PUT's tag is what a GET serves next.
    now_shown, now_tag = await _read(api, clinician, patient)
    assert now_tag == saved.headers["etag"] != tag
    assert now_shown == {k: body[k] for k in now_shown}
    row = await _patient_row(api, patient.id)
    assert row.research_consent is True
    assert _aware(row.consent_updated_at) == clock.now()

    # The same consents again: nothing changes, not even the time they were recorded.
    clock.advance(minutes=5)
    same_again = await api.put(
        _url(patient),
        headers={**clinician.headers, "If-Match": now_tag},
        json={"monitoring_consent": True, "research_consent": True},
    )
    assert same_again.status_code == 200, same_again.text
    assert same_again.headers["etag"] == now_tag
    actions = await _audits(api, patient.id)
    assert actions.count("patient.consent.research_given") == 1
    assert actions.count("patient.consent.read") == 3
    assert not [a for a in actions if a.startswith("patient.consent.monitoring")]

    # The patient sees the same record in the app.
    mine = await api.get("/api/v1/me/consent", headers=patient.headers)
    assert mine.status_code == 200, mine.text
    assert mine.json() == now_shown
    assert mine.headers["etag"] == now_tag


async def test_a_change_without_if_match_or_from_a_stale_copy_writes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician, patient = people.staff["clinician_a"], people.patients["patient_a"]
    shown, stale = await _read(api, clinician, patient)
    body = {"monitoring_consent": False, "research_consent": False}

    for headers, status in (
        (clinician.headers, 428),
        ({**clinician.headers, "If-Match": "*"}, 428),
        ({**clinician.headers, "If-Match": 'W/"' + stale.strip('"') + '"'}, 412),
        ({**clinician.headers, "If-Match": '"0123456789abcdef0123456789abcdef"'}, 412),
        ({**clinician.headers, "If-Match": "not-a-tag"}, 422),
    ):
        refused = await api.put(_url(patient), headers=headers, json=body)
        assert refused.status_code == status, (headers, refused.text)
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert refused.json()["status"] == status

    # Someone else records research consent; the first copy is now stale.
    clock.advance(minutes=1)
    await _put(api, people.staff["admin_a"], patient, monitoring=True, research=True)
    late = await api.put(_url(patient), headers={**clinician.headers, "If-Match": stale}, json=body)
    assert late.status_code == 412, late.text
    assert late.headers["content-type"].startswith(PROBLEM)
    assert "read it again" in late.json()["detail"]
    row = await _patient_row(api, patient.id)
    assert (row.monitoring_consent, row.research_consent, row.status) == (True, True, "active")
    # A list holding the current tag among stale ones is accepted.
    _, current = await _read(api, clinician, patient)
    listed = await api.put(
        _url(patient),
        headers={**clinician.headers, "If-Match": f"{stale}, {current}"},
        json={"monitoring_consent": True, "research_consent": False},
    )
    assert listed.status_code == 200, listed.text
    assert shown["research_consent"] is listed.json()["research_consent"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"monitoring_consent": True},
        {"research_consent": True},
        {},
        {"monitoring_consent": "false", "research_consent": False},
        {"monitoring_consent": 0, "research_consent": False},
        {"monitoring_consent": None, "research_consent": False},
        {"monitoring_consent": False, "research_consent": False, "status": "active"},
        [False, False],
        "withdraw",
    ],
)
async def test_bad_input_is_a_problem_and_changes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    body: Any,
) -> None:
    clinician, patient = people.staff["clinician_a"], people.patients["patient_a"]
    before, tag = await _read(api, clinician, patient)
    for url, headers in (
        (_url(patient), {**clinician.headers, "If-Match": tag}),
        ("/api/v1/me/consent", patient.headers),
    ):
        refused = await api.put(url, headers=headers, json=body)
        assert 400 <= refused.status_code < 500, refused.text
        assert refused.headers["content-type"].startswith(PROBLEM)
    assert await _read(api, clinician, patient) == (before, tag)


async def test_only_clinical_staff_of_the_patients_clinic_read_or_change_consent(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    patient = people.patients["patient_a"]
    _, tag = await _read(api, people.staff["admin_a"], patient)
    body = {"monitoring_consent": False, "research_consent": True}
    for name in ("researcher_a", "operator", "clinician_b", "admin_b"):
        who = people.staff[name]
        read = await api.get(_url(patient), headers=who.headers)
        assert read.status_code in (403, 404), (name, read.text, read.status_code)
        write = await api.put(_url(patient), headers={**who.headers, "If-Match": tag}, json=body)
        assert write.status_code in (403, 404), (name, write.text)
        assert write.headers["content-type"].startswith(PROBLEM)
    # A patient reaches only their own consent, through /me.
    other = people.patients["patient_a2"]
    # (401: a patient's token is not for staff routes at all.)
    assert (await api.get(_url(patient), headers=other.headers)).status_code in (401, 403, 404)
    assert (await api.get(_url(patient), headers=patient.headers)).status_code in (401, 403, 404)
    row = await _patient_row(api, patient.id)
    assert (row.monitoring_consent, row.research_consent, row.status) == (True, False, "active")
    missing = await api.get(
        f"/api/v1/patients/{uuid.uuid4()}/consent", headers=people.staff["admin_a"].headers
    )
    assert missing.status_code == 404


async def test_an_erased_patient_has_no_consent_to_read_or_change(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    admin, patient = people.staff["admin_a"], people.patients["patient_a"]
    _, tag = await _read(api, admin, patient)
    erased = await api.delete(f"/api/v1/patients/{patient.id}", headers=admin.headers)
    assert erased.status_code == 204, erased.text
    assert (await api.get(_url(patient), headers=admin.headers)).status_code in (404, 410)
    write = await api.put(
        _url(patient),
        headers={**admin.headers, "If-Match": tag},
        json={"monitoring_consent": True, "research_consent": True},
    )
    assert write.status_code in (404, 410), write.text
    assert write.headers["content-type"].startswith(PROBLEM)
    row = await _patient_row(api, patient.id)
    assert (row.status, row.research_consent) == ("erased", False)


async def test_a_patient_can_withdraw_consent_but_never_give_it(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    patient = people.patients["patient_a"]
    await _put(api, people.staff["clinician_a"], patient, monitoring=True, research=False)
    mine = await api.get("/api/v1/me/consent", headers=patient.headers)
    assert mine.status_code == 200, mine.text
    tag = mine.headers["etag"]

    # Giving research consent from the app is refused, with or without If-Match.
    for headers in (patient.headers, {**patient.headers, "If-Match": tag}):
        refused = await api.put(
            "/api/v1/me/consent",
            headers=headers,
            json={"monitoring_consent": True, "research_consent": True},
        )
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert "clinic" in refused.json()["detail"]
    row = await _patient_row(api, patient.id)
    assert (row.monitoring_consent, row.research_consent) == (True, False)

    # A patient's withdrawal from a stale copy is refused too (If-Match is honoured).
    await _put(api, people.staff["clinician_a"], patient, monitoring=True, research=True)
    stale = await api.put(
        "/api/v1/me/consent",
        headers={**patient.headers, "If-Match": tag},
        json={"monitoring_consent": True, "research_consent": False},
    )
    assert stale.status_code == 412, stale.text

    clock.advance(minutes=1)
    withdrawn = await api.put(
        "/api/v1/me/consent",
        headers=patient.headers,
        json={"monitoring_consent": True, "research_consent": False},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["research_consent"] is False
    assert withdrawn.json()["status"] == "active"
    row = await _patient_row(api, patient.id)
    assert (row.monitoring_consent, row.research_consent) == (True, False)
    assert _aware(row.consent_updated_at) == clock.now()
    actions = await _audits(api, patient.id)
    assert actions[-1] == "patient.consent.research_withdrawn"
    # Once withdrawn, it cannot be given back from the app.
    back = await api.put(
        "/api/v1/me/consent",
        headers=patient.headers,
        json={"monitoring_consent": True, "research_consent": True},
    )
    assert back.status_code == 403, back.text


async def test_a_patient_withdrawing_monitoring_stops_it_and_their_app_at_once(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    patient, other = people.patients["patient_a"], people.patients["patient_a2"]
    start = clock.now() + timedelta(days=2)
    await _plan_session(api, people, patient, start)
    await _plan_session(api, people, other, start)
    assert {r.status for r in (await _rows(api, patient.id)).values()} & OPEN
    with caplog.at_level(logging.DEBUG):
        stopped = await _withdraw_in_app(api, patient)
        assert stopped.json()["status"] == "withdrawn"
        assert stopped.json()["check_ins_cancelled"] > 0
        rows = await _rows(api, patient.id)
        assert {r.status for r in rows.values()} == {"cancelled"}
        assert all(r.cancelled_at is not None for r in rows.values())
        # Another patient keeps theirs.
        assert {r.status for r in (await _rows(api, other.id)).values()} & OPEN

        # Answers are refused with a problem, not stored, not a 500.
        answer = await api.post("/api/v1/responses", headers=patient.headers, json=_phq9())
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
        # The app's session ends at its next refresh.
        refreshed = await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": patient.tokens["refresh_token"]}
        )
        assert refreshed.status_code == 401, refreshed.text
        assert refreshed.headers["content-type"].startswith(PROBLEM)
    actions = await _audits(api, patient.id)
    assert "patient.consent.monitoring_withdrawn" in actions
    rendered = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    for phi in ("Patient MRN-A-001", "pat.a1@example.org", "MRN-A-001", "7946"):
        assert phi not in rendered
    row = await _patient_row(api, patient.id)
    assert (row.status, row.monitoring_consent) == ("withdrawn", False)


async def test_alerts_raised_before_a_withdrawal_stay_open_for_the_clinicians(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician, patient = people.staff["clinician_a"], people.patients["patient_a"]
    answered = await api.post("/api/v1/responses", headers=patient.headers, json=_phq9(item9=2))
    assert answered.status_code in (200, 201), answered.text
    [alert] = await _alerts_of_kind(api, clinician, patient, "SUICIDALITY")
    assert alert["status"] == "open"

    clock.advance(minutes=1)
    await _withdraw_in_app(api, patient)
    after = await api.get(f"/api/v1/alerts/{alert['id']}", headers=clinician.headers)
    assert after.status_code == 200, after.text
    assert after.json()["alert"]["status"] == "open"
    acknowledged = await api.post(
        f"/api/v1/alerts/{alert['id']}/acknowledge", headers=clinician.headers
    )
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["status"] == "acknowledged"


async def test_withdrawal_cancels_open_check_ins_and_closes_their_fallbacks(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician, patient = people.staff["clinician_a"], people.patients["patient_a"]
    await _plan_session(api, people, patient, clock.now() + timedelta(days=2))
    rows = sorted((await _rows(api, patient.id)).values(), key=lambda r: _aware(r.due_at))
    assert len(rows) > 4
    sent_open, sent_closed, answered = rows[0].id, rows[1].id, rows[2].id
    now = clock.now()
    await _set_status(api, sent_open, "sent", sent_at=now, closes_at=now + timedelta(hours=6))
    await _set_status(api, sent_closed, "sent", sent_at=now, closes_at=now - timedelta(hours=1))
    await _set_status(api, answered, "answered", answered_at=now)
    async with runtime_of(api).require_engine().begin() as connection:
        for check_in_id in (sent_open, answered):
            await fallback.watch(
                connection,
                check_in_id=check_in_id,
                clinic_id=people.clinic_a,
                first_sent_at=now,
                closes_at=now + timedelta(hours=6),
                next_at=now + timedelta(hours=1),
            )
    before = await _rows(api, patient.id)

    clock.advance(minutes=1)
    saved = await _put(api, clinician, patient, monitoring=False, research=False)
    assert saved["status"] == "withdrawn"
    after = await _rows(api, patient.id)
    open_before = {
        i
        for i, r in before.items()
        if r.status in {"pending", "merged"} or (r.status == "sent" and i == sent_open)
    }
    assert saved["check_ins_cancelled"] == len(open_before)
    for check_in_id, row in after.items():
        if check_in_id in open_before:
            assert row.status == "cancelled", check_in_id
            assert _aware(row.cancelled_at) == clock.now()
            assert row.next_reminder_at is None
        else:
            assert row == before[check_in_id]  # answered, and the closed window left to timers
    watches = await _watches(api, [sent_open, answered])
    assert {w.status for w in watches.values()} == {"closed"}
    assert {w.outcome for w in watches.values()} == {"monitoring_stopped"}
    actions = await _audits(api, patient.id)
    assert actions.count("patient.consent.monitoring_withdrawn") == 1
    assert actions.count("patient.consent.research_withdrawn") == 0  # it was not given


async def test_giving_monitoring_consent_again_plans_the_check_ins_again(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """Withdrawn, then given again, with a session recorded in between: the patient's check-ins
    are what they would be had monitoring never stopped (another patient with the same
    sessions, never withdrawn, is the reference)."""
    clinician, patient = people.staff["clinician_a"], people.patients["patient_a"]
    reference = people.patients["patient_a2"]
    first, second = clock.now() + timedelta(days=2), clock.now() + timedelta(days=9)
    await _plan_session(api, people, patient, first)
    await _plan_session(api, people, reference, first)
    planned = {r.idempotency_key for r in (await _rows(api, patient.id)).values()}
    await _put(api, clinician, patient, monitoring=False, research=False)
    # A session recorded while withdrawn plans nothing to ask them.
    await _plan_session(api, people, patient, second)
    await _plan_session(api, people, reference, second)
    rows = await _rows(api, patient.id)
    assert {r.status for r in rows.values()} == {"cancelled"}
    assert {r.idempotency_key for r in rows.values()} == planned

    clock.advance(minutes=1)
    given = await _put(api, clinician, patient, monitoring=True, research=False)
    assert given["status"] == "active"

    def live(rows: dict[uuid.UUID, Any]) -> list[tuple[str, str, datetime]]:
        return sorted(
            (r.step, r.status, _aware(r.due_at))
            for r in rows.values()
            if r.status in {"pending", "merged"}
        )

    after = await _rows(api, patient.id)
    assert live(after) == live(await _rows(api, reference.id))
    assert len(live(after)) > 0
    assert given["check_ins_planned"] >= len(live(after)) - len(planned)
    # Given again with nothing changed: nothing more is planned.
    same = await _put(api, clinician, patient, monitoring=True, research=False)
    assert same["check_ins_planned"] == 0
    assert await _rows(api, patient.id) == after
    # The app's session works again (the refresh token was never revoked).
    refreshed = await api.post(
        "/api/v1/auth/refresh", json={"refresh_token": patient.tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    actions = await _audits(api, patient.id)
    assert actions.count("patient.consent.monitoring_given") == 1


async def test_a_patient_never_enrolled_on_a_device_goes_back_to_invited(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    clinician = people.staff["clinician_a"]
    created = await api.post(
        "/api/v1/patients",
        headers=clinician.headers,
        json={"name": "Patient Invited", "time_zone": "Europe/London"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    account = PatientAccount(
        id=uuid.UUID(body["patient"]["id"]), clinic_id=people.clinic_a, mrn="", email=""
    )
    assert (await _put(api, clinician, account, monitoring=False, research=False))[
        "status"
    ] == "withdrawn"
    # A withdrawn patient's code does not enrol a device...
    redemption = {
        "code": body["enrolment"]["code"],
        "device": {"platform": "ios", "time_zone": "Europe/London", "locale": "en"},
    }
    refused = await api.post("/api/v1/enrolment/redeem", json=redemption)
    assert refused.status_code == 401, refused.text
    given = await _put(api, clinician, account, monitoring=True, research=False)
    assert given["status"] == "invited"
    # ...and is not used up by the attempt: once consent is recorded again, it enrols.
    enrolled = await api.post("/api/v1/enrolment/redeem", json=redemption)
    assert enrolled.status_code in (200, 201), enrolled.text
    assert (await _patient_row(api, account.id)).status == "active"


async def test_a_patient_is_only_enrolled_with_monitoring_consent(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    clinician = people.staff["clinician_a"]
    listed = await api.get("/api/v1/patients", headers=clinician.headers)
    refused = await api.post(
        "/api/v1/patients",
        headers=clinician.headers,
        json={
            "name": "Patient Refusing",
            "time_zone": "Europe/London",
            "mrn": "MRN-NO-CONSENT",
            "monitoring_consent": False,
            "research_consent": True,
        },
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    problem = refused.json()
    assert [e["pointer"] for e in problem["errors"]] == ["/monitoring_consent"]
    assert "Refusing" not in refused.text
    assert (await api.get("/api/v1/patients", headers=clinician.headers)).json() == listed.json()
    async with runtime_of(api).require_sessionmaker()() as session:
        count = await session.scalar(select(func.count()).select_from(Patient))
    assert count == 3


async def test_a_withdrawal_beside_a_timer_pass_does_not_wait_for_its_check_in(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """The pass holds a claimed check-in to its end; the withdrawal locks the patient's row and
    skips that check-in (PostgreSQL; on SQLite a pass and a request never overlap). The pass
    completes; the next pass that meets the row cancels it (monitoring stopped)."""
    runtime = runtime_of(api)
    engine = runtime.require_engine()
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: a timer pass and a request never overlap")
    clinician, patient = people.staff["clinician_a"], people.patients["patient_a"]
    await _plan_session(api, people, patient, clock.now() + timedelta(hours=12))
    _, tag = await _read(api, clinician, patient)
    now = clock.now()
    async with runtime.require_sessionmaker()() as timer:
        connection = await timer.connection()
        claimed = await repository.claim_due(
            connection, instance="timer", now=now, lease=timedelta(minutes=1), limit=10
        )
        assert len(claimed) == 1
        withdrawal = asyncio.create_task(
            api.put(
                _url(patient),
                headers={**clinician.headers, "If-Match": tag},
                json={"monitoring_consent": False, "research_consent": False},
            )
        )
        await asyncio.wait({withdrawal}, timeout=15)
        if not withdrawal.done():
            await timer.rollback()  # release it, so the test fails instead of hanging
            await asyncio.wait_for(withdrawal, timeout=30)
            pytest.fail("the withdrawal waited for the check-in the timer holds")
        assert withdrawal.result().status_code == 200, withdrawal.result().text
        sent = [(r.id, 1, repository.next_reminder(r.reminders_at, now)) for r in claimed]
        assert await repository.mark_sent(connection, sent, instance="timer", now=now) == 1
        await timer.commit()
    rows = await _rows(api, patient.id)
    held = rows.pop(claimed[0].id)
    assert held.status == "sent"
    assert rows
    assert {r.status for r in rows.values()} == {"cancelled"}


async def test_a_withdrawal_from_the_app_tells_the_care_team_and_one_by_staff_does_not(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"]
    patient, other = people.patients["patient_a"], people.patients["patient_a2"]
    await _plan_session(api, people, patient, clock.now() + timedelta(days=2))
    stopped = await _withdraw_in_app(api, patient)
    [alert] = await _alerts_of_kind(api, clinician, patient, "MONITORING_WITHDRAWN")
    assert (alert["status"], alert["severity"]) == ("open", "routine")
    # Sent to the care team like any alert: a message naming the alert, nothing about the patient.
    messages = await outbox_for(api, uuid.UUID(alert["id"]))
    assert messages
    assert {m.kind for m in messages} == {"alert"}
    assert {m.recipient_type for m in messages} == {"staff"}
    detail = await api.get(f"/api/v1/alerts/{alert['id']}", headers=clinician.headers)
    assert detail.status_code == 200, detail.text
    [occurrence] = detail.json()["occurrences"]
    assert occurrence["ruleId"] == "monitoring-withdrawn@1.0.0"
    assert occurrence["evidence"]["measures"] == {
        "withdrawn_by": "patient",
        "check_ins_cancelled": stopped.json()["check_ins_cancelled"],
    }
    assert stopped.json()["check_ins_cancelled"] > 0
    # The clinic acknowledges it like any other.
    acknowledged = await api.post(
        f"/api/v1/alerts/{alert['id']}/acknowledge", headers=clinician.headers
    )
    assert acknowledged.status_code == 200, acknowledged.text

    # Staff recording a withdrawal already know: no alert for that one.
    await _put(api, clinician, other, monitoring=False, research=False)
    assert await _alerts_of_kind(api, clinician, other, "MONITORING_WITHDRAWN") == []
