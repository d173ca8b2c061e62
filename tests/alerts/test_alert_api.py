"""The clinician alert API, N2O holds and the clinic's alert settings, through HTTP on both
databases: ordering, filters, pagination, evidence, lifecycle, audit, access and bad input."""

import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.alerts.holds import n2o_hold_for, record_hold_override
from backend.identity.principal import Principal
from backend.identity.roles import Role
from questionnaires.registry import get_instrument
from tests.alerts.stored import alerts_of, audit_actions, neuro, phq9, submit
from tests.identity.conftest import MovableClock, World, runtime_of

PHQ9 = get_instrument("phq9")


def _phq9_body(item9: int) -> dict[str, Any]:
    answers = {**phq9(8), "phq9-9": item9}
    return {
        "instrumentId": "phq9",
        "instrumentVersion": PHQ9.version,
        "answers": [{"linkId": k, "value": v} for k, v in answers.items()],
    }


async def _pages(
    api: AsyncTestClient[Litestar], headers: dict[str, str], query: str
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        url = f"/api/v1/alerts?{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await api.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


async def test_a_patients_positive_answer_reaches_the_clinicians_alert_list(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient, other = world.patients["patient_a"], world.patients["patient_a2"]
    clinician = world.staff["clinician_a"]

    submitted = await api.post("/api/v1/responses", headers=patient.headers, json=_phq9_body(2))
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert next(iter(body)) == "safety"  # the crisis screen before anything else
    assert body["safety"]["urgency"] == "urgent"
    assert body["patientActions"] == ["show_crisis_resources"]
    clock.advance(minutes=1)
    await submit(api, clock, other, "n2o-neuro", neuro("NEURO-1"))

    everything = await _pages(api, clinician.headers, "limit=1")
    # Most severe first, then oldest first.
    assert [(a["kind"], a["severity"]) for a in everything] == [
        ("SUICIDALITY", "urgent"),
        ("N2O_NEURO_SYMPTOMS", "high"),
        ("HAEMATOLOGICAL_MONITORING_DUE", "routine"),
    ]
    assert [a["patientId"] for a in everything] == [str(patient.id), str(other.id), str(other.id)]
    high = await _pages(api, clinician.headers, "severity=high&severity=urgent")
    assert [a["kind"] for a in high] == ["SUICIDALITY", "N2O_NEURO_SYMPTOMS"]
    theirs = await _pages(api, clinician.headers, f"patient={other.id}")
    assert {a["kind"] for a in theirs} == {"N2O_NEURO_SYMPTOMS", "HAEMATOLOGICAL_MONITORING_DUE"}
    assert await _pages(api, clinician.headers, "status=resolved") == []


async def test_acknowledge_then_resolve_with_an_encrypted_note(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    clinician = world.staff["clinician_a"]
    await submit(api, clock, patient, "phq9", phq9(8, item9=1))
    [stored] = await alerts_of(api, patient.id)
    url = f"/api/v1/alerts/{stored.id}"

    detail = await api.get(url, headers=clinician.headers)
    assert detail.status_code == 200, detail.text
    [occurrence] = detail.json()["occurrences"]
    assert occurrence["kind"] == "SUICIDALITY"
    assert [(a["link_id"], a["value"]) for a in occurrence["evidence"]["answers"]] == [
        ("phq9-9", 1)
    ]
    assert detail.json()["resolution"] is None

    clock.advance(minutes=3)
    acknowledged = await api.post(f"{url}/acknowledge", headers=clinician.headers)
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["status"] == "acknowledged"
    assert acknowledged.json()["acknowledgedBy"] == str(clinician.id)
    again = await api.post(f"{url}/acknowledge", headers=clinician.headers)
    assert again.status_code == 200
    assert again.json()["acknowledgedAt"] == acknowledged.json()["acknowledgedAt"]

    note = "Phoned the patient; safety plan reviewed; seen tomorrow."
    resolved = await api.post(
        f"{url}/resolve",
        headers=clinician.headers,
        json={"outcome": "patient_contacted", "note": note},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    [row] = await alerts_of(api, patient.id)
    assert row.next_escalation_at is None
    assert row.resolution_ct is not None
    assert note.encode() not in bytes(row.resolution_ct)
    detail = await api.get(url, headers=clinician.headers)
    assert detail.json()["resolution"] == {"outcome": "patient_contacted", "note": note}

    for action in ("acknowledge", "resolve"):
        refused = await api.post(
            f"{url}/{action}",
            headers=clinician.headers,
            json={"outcome": "other", "note": "again"},
        )
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")

    actions = await audit_actions(api, stored.id)
    for expected in ("alert.open", "alert.read", "alert.acknowledge", "alert.resolve"):
        assert expected in actions
    assert actions.count("alert.acknowledge") == 1  # acknowledging twice changed nothing

    # A new positive answer after resolution is a new alert.
    await submit(api, clock, patient, "phq9", phq9(8, item9=1))
    assert [a.status for a in await alerts_of(api, patient.id)] == ["resolved", "open"]


async def test_bad_requests_are_problems(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    clinician, admin = world.staff["clinician_a"], world.staff["admin_a"]
    await submit(api, clock, patient, "phq9", phq9(8, item9=1))
    [stored] = await alerts_of(api, patient.id)
    url = f"/api/v1/alerts/{stored.id}"

    cases: list[tuple[str, str, dict[str, Any] | None, int]] = [
        ("GET", "/api/v1/alerts?severity=bogus", None, 400),
        ("GET", "/api/v1/alerts?status=closed", None, 400),
        ("GET", "/api/v1/alerts?limit=0", None, 400),
        ("GET", "/api/v1/alerts?patient=not-a-uuid", None, 400),
        ("GET", "/api/v1/alerts?cursor=bm90LWEtY3Vyc29y", None, 422),
        ("GET", f"/api/v1/alerts/{uuid.uuid4()}", None, 404),
        ("POST", f"{url}/resolve", {"outcome": "bogus", "note": "x"}, 400),
        ("POST", f"{url}/resolve", {"outcome": "other", "note": ""}, 400),
        ("POST", f"{url}/resolve", {"outcome": "other", "note": "x", "extra": 1}, 400),
        ("POST", f"{url}/resolve", {"note": "x"}, 400),
        ("POST", f"/api/v1/alerts/{uuid.uuid4()}/acknowledge", None, 404),
    ]
    for method, path, body, status in cases:
        response = await api.request(method, path, headers=clinician.headers, json=body)
        assert response.status_code == status, (path, body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")

    admin_cases: list[tuple[str, dict[str, Any], int]] = [
        ("/api/v1/clinic/alert-on-call", {"staffIds": [str(world.staff["clinician_b"].id)]}, 422),
        ("/api/v1/clinic/alert-on-call", {"staffIds": [str(clinician.id)] * 2}, 422),
        ("/api/v1/clinic/alert-on-call", {"staffIds": ["nope"]}, 400),
        ("/api/v1/clinic/alert-parameters", {"parameterSet": "clinic-a"}, 422),
        (
            "/api/v1/clinic/alert-parameters",
            {"parameterSet": "clinic-a", "version": "1", "slaMinutes": {"urgent": "soon"}},
            422,
        ),
    ]
    for path, body, status in admin_cases:
        response = await api.put(path, headers=admin.headers, json=body)
        assert response.status_code == status, (path, body, response.text)
    # Nothing was acknowledged or resolved by any of it.
    [unchanged] = await alerts_of(api, patient.id)
    assert unchanged.status == "open"


async def test_only_the_patients_clinic_sees_its_alerts(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    await submit(api, clock, patient, "phq9", phq9(8, item9=1))
    [stored] = await alerts_of(api, patient.id)
    url = f"/api/v1/alerts/{stored.id}"

    other_clinic = world.staff["clinician_b"]
    assert (await api.get(url, headers=other_clinic.headers)).status_code == 404
    assert (await api.post(f"{url}/acknowledge", headers=other_clinic.headers)).status_code == 404
    listed = await api.get("/api/v1/alerts", headers=other_clinic.headers)
    assert listed.json()["items"] == []
    assert (await api.get(url, headers=world.staff["researcher_a"].headers)).status_code == 403
    assert (await api.get(url, headers=patient.headers)).status_code == 401
    clinician = world.staff["clinician_a"]
    on_call = await api.put(
        "/api/v1/clinic/alert-on-call",
        headers=clinician.headers,
        json={"staffIds": [str(clinician.id)]},
    )
    assert on_call.status_code == 403
    [still] = await alerts_of(api, patient.id)
    assert still.status == "open"


async def test_a_clinic_override_changes_new_alerts_and_is_recorded_on_them(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    admin = world.staff["admin_a"]
    override = {"parameterSet": "clinic-a", "version": "2", "slaMinutes": {"priority": 30}}
    saved = await api.put("/api/v1/clinic/alert-parameters", headers=admin.headers, json=override)
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == "interlude-default@1.2.0+clinic-a@2"
    again = await api.put("/api/v1/clinic/alert-parameters", headers=admin.headers, json=override)
    assert again.status_code == 409
    read = await api.get(
        "/api/v1/clinic/alert-parameters", headers=world.staff["clinician_a"].headers
    )
    assert read.json()["override"] == override

    await submit(api, clock, patient, "phq9", phq9(8, item9=1))
    [alert] = await alerts_of(api, patient.id)
    assert alert.parameter_version == "interlude-default@1.2.0+clinic-a@2"
    assert alert.sla_minutes == 30
    # The other clinic still runs on the defaults.
    await submit(api, clock, world.patients["patient_b"], "phq9", phq9(8, item9=1))
    [theirs] = await alerts_of(api, world.patients["patient_b"].id)
    assert (theirs.parameter_version, theirs.sla_minutes) == ("interlude-default@1.2.0", 480)


async def test_a_submission_evaluates_under_the_clinic_s_newest_override(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    # The submission reads the override with the patient row (one statement): the newest
    # version must win over older ones, as in `clinic_settings.current_parameters`.
    admin = world.staff["admin_a"]
    for version, minutes in (("2", 30), ("3", 45)):
        override = {
            "parameterSet": "clinic-a",
            "version": version,
            "slaMinutes": {"priority": minutes},
        }
        saved = await api.put(
            "/api/v1/clinic/alert-parameters", headers=admin.headers, json=override
        )
        assert saved.status_code == 200, saved.text
        clock.advance(seconds=1)
    await submit(api, clock, world.patients["patient_a"], "phq9", phq9(8, item9=1))
    [alert] = await alerts_of(api, world.patients["patient_a"].id)
    assert (alert.parameter_version, alert.sla_minutes) == (
        "interlude-default@1.2.0+clinic-a@3",
        45,
    )


async def test_a_clinician_clears_an_n2o_hold(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    clinician = world.staff["clinician_a"]
    url = f"/api/v1/patients/{patient.id}/n2o-hold"
    assert (await api.get(url, headers=clinician.headers)).json() == {"hold": None}

    await submit(api, clock, patient, "n2o-neuro", neuro("NEURO-3"))
    symptoms = {a.kind: a for a in await alerts_of(api, patient.id)}["N2O_NEURO_SYMPTOMS"]
    held = (await api.get(url, headers=clinician.headers)).json()["hold"]
    assert held["alertId"] == str(symptoms.id)
    detail = await api.get(f"/api/v1/alerts/{symptoms.id}", headers=clinician.headers)
    assert detail.json()["n2oHold"]["id"] == held["id"]

    # The session API asks before starting an N2O session; an override is audited.
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        hold = await n2o_hold_for(session, patient.id)
        assert hold is not None
        principal = Principal(
            subject_id=clinician.id,
            role=Role.CLINICIAN,
            clinic_id=world.clinic_a,
            session_id=uuid.uuid4(),
        )
        treatment_session = uuid.uuid4()
        await record_hold_override(
            session, principal, hold, treatment_session_id=treatment_session, now=clock.now()
        )
        await session.commit()
    assert await audit_actions(api, treatment_session) == ["n2o_hold.override"]

    assert (
        await api.post(f"{url}/clear", headers=world.staff["clinician_b"].headers)
    ).status_code == 403
    cleared = await api.post(f"{url}/clear", headers=clinician.headers)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["clearedBy"] == str(clinician.id)
    assert (await api.get(url, headers=clinician.headers)).json() == {"hold": None}
    assert await audit_actions(api, uuid.UUID(held["id"])) == ["n2o_hold.set", "n2o_hold.clear"]
    again = await api.post(f"{url}/clear", headers=clinician.headers)
    assert again.status_code == 404

    # New HIGH symptoms hold the next session again, even though the alert is still open.
    clock.advance(minutes=10)  # (access tokens live 15 minutes)
    await submit(api, clock, patient, "n2o-neuro", neuro("NEURO-9"))
    renewed = (await api.get(url, headers=clinician.headers)).json()["hold"]
    assert renewed["id"] != held["id"]
    assert renewed["alertId"] == str(symptoms.id)
