"""A clinic's crisis resources per locale (clinical-spec §5.3 rule 2): set by its admin (validated,
audited), shown first on a positive submission, with the shipped defaults as fallback."""

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.domain.responses import service
from backend.domain.responses.schemas import ResponseSubmission, SubmissionResult
from backend.domain.safety.resources import TABLE
from questionnaires.answers import Answer
from questionnaires.registry import get_instrument
from tests.alerts.stored import alerts_of, audit_actions, count, phq9, rows, submit
from tests.identity.conftest import MovableClock, PatientAccount, World, runtime_of

URL = "/api/v1/clinic/crisis-resources"
CLINIC_GB = {
    "headline": "If you might act on these thoughts, call 999 now.",
    "resources": [
        {"label": "Emergency services", "phone": "999"},
        {"label": "Samaritans", "phone": "116 123"},
        {"label": "Our crisis line (24 h)", "phone": "+44 20 7946 0000"},
    ],
    "clinicContact": "Example Clinic, 020 7946 0001",
}


async def _submit(
    api: AsyncTestClient[Litestar],
    clock: MovableClock,
    patient: PatientAccount,
    locale: str | None,
    item9: int,
) -> SubmissionResult:
    runtime = runtime_of(api)
    instrument = get_instrument("phq9")
    async with runtime.require_sessionmaker()() as session:
        result = await service.submit_response(
            session,
            runtime.keyring,
            patient=service.PatientRef(
                patient_id=patient.id, clinic_id=patient.clinic_id, locale=locale
            ),
            submission=ResponseSubmission(
                instrument_id=instrument.id,
                instrument_version=instrument.version,
                answers=tuple(Answer(link_id=k, value=v) for k, v in phq9(6, item9=item9).items()),
            ),
            idempotency_key=None,
            now=clock.now(),
        )
        await session.commit()
    return result


async def test_the_clinics_resources_come_first_for_its_patients_locale(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin = world.staff["admin_a"]
    shipped = await api.get(f"{URL}/en-GB", headers=admin.headers)
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["source"] == "default"
    assert [r["phone"] for r in shipped.json()["resources"]] == ["999", "111", "116 123"]

    saved = await api.put(f"{URL}/en_gb", headers=admin.headers, json=CLINIC_GB)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["locale"], body["source"], body["version"]) == ("en-GB", "clinic", "clinic-1")

    result = await _submit(api, clock, world.patients["patient_a"], "en-GB", item9=1)
    assert result.safety is not None
    assert result.safety.urgency == "priority"
    assert result.safety.headline == CLINIC_GB["headline"]
    assert [r.phone for r in result.safety.resources] == ["999", "116 123", "+44 20 7946 0000"]
    assert result.safety.clinic_contact == CLINIC_GB["clinicContact"]
    assert result.safety.resources_version == "clinic-1"
    assert result.safety.requires_acknowledgement

    # A patient of another clinic, same locale: the shipped defaults.
    other = await _submit(api, clock, world.patients["patient_b"], "en-GB", item9=2)
    assert other.safety is not None
    assert other.safety.urgency == "urgent"
    assert [r.phone for r in other.safety.resources] == ["999", "111", "116 123"]
    assert other.safety.clinic_contact is None

    # No safety signal, no screen (and no settings read needed).
    calm = await _submit(api, clock, world.patients["patient_a"], "en-GB", item9=0)
    assert calm.safety is None


async def test_fallback_runs_locale_then_language_then_the_clinic_default_then_shipped(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin = world.staff["admin_a"]
    patient = world.patients["patient_a"]

    async def phones(locale: str | None) -> list[str]:
        result = await _submit(api, clock, patient, locale, item9=1)
        assert result.safety is not None
        return [r.phone for r in result.safety.resources]

    assert await phones("en-US") == ["988", "911"]
    assert await phones(None) == ["112"]
    default = {"headline": "Call us or 112.", "resources": [{"label": "Clinic", "phone": "112"}]}
    spanish = {"headline": "Llame al 112.", "resources": [{"label": "Emergencias", "phone": "112"}]}
    for locale, entry in (("default", default), ("es", spanish)):
        assert (await api.put(f"{URL}/{locale}", headers=admin.headers, json=entry)).is_success
    assert await phones("en-US") == ["112"]  # the clinic's catch-all before the shipped defaults
    result = await _submit(api, clock, patient, "es-ES", item9=1)
    assert result.safety is not None
    assert result.safety.headline == "Llame al 112."

    listed = (await api.get(URL, headers=world.staff["clinician_a"].headers)).json()
    assert [e["locale"] for e in listed["entries"]] == ["default", "es"]

    removed = await api.delete(f"{URL}/default", headers=admin.headers)
    assert removed.status_code == 204, removed.text
    assert await phones("en-US") == ["988", "911"]
    again = await api.delete(f"{URL}/default", headers=admin.headers)
    assert again.status_code == 404
    assert again.headers["content-type"].startswith("application/problem+json")


async def test_changes_are_the_admins_validated_and_audited(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    admin, clinician = world.staff["admin_a"], world.staff["clinician_a"]
    denied = await api.put(f"{URL}/en-GB", headers=clinician.headers, json=CLINIC_GB)
    assert denied.status_code == 403

    bad: list[tuple[str, Any]] = [
        ("en-GB", {**CLINIC_GB, "resources": []}),
        ("en-GB", {**CLINIC_GB, "resources": [{"label": "x", "phone": "<script>"}]}),
        ("en-GB", {**CLINIC_GB, "headline": ""}),
        ("en-GB", {**CLINIC_GB, "headline": "   "}),
        ("en-GB", {**CLINIC_GB, "extra": 1}),
        ("en-GB", {**CLINIC_GB, "resources": [{"label": "x", "phone": "1"}] * 11}),
        ("english", CLINIC_GB),
        ("en-GBR", CLINIC_GB),
        ("e1", CLINIC_GB),
    ]
    for locale, body in bad:
        response = await api.put(f"{URL}/{locale}", headers=admin.headers, json=body)
        assert response.status_code in (400, 422), (locale, body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert await count(api, TABLE) == 0

    first = await api.put(f"{URL}/en-GB", headers=admin.headers, json=CLINIC_GB)
    second = await api.put(
        f"{URL}/en-GB", headers=admin.headers, json={**CLINIC_GB, "clinicContact": None}
    )
    assert second.json()["version"] == "clinic-2"
    assert second.json()["clinicContact"] is None
    assert first.is_success
    [row] = await rows(api, select(TABLE))
    assert row.updated_by == admin.id
    assert await audit_actions(api, row.id) == ["crisis_resources.update"] * 2

    # Another clinic's admin neither sees nor changes this clinic's entries.
    other = world.staff["admin_b"]
    assert (await api.get(URL, headers=other.headers)).json()["entries"] == []
    assert (await api.delete(f"{URL}/en-GB", headers=other.headers)).status_code == 404


async def test_madrs_s_item_9_of_2_alerts_the_clinician_without_a_crisis_screen(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    answers = {f"madrs-s-{n}": 1 for n in range(1, 9)}
    task_only = await submit(api, clock, patient, "madrs-s", answers | {"madrs-s-9": 2})
    assert task_only.safety is None
    assert task_only.patient_actions == ()
    [alert] = [a for a in await alerts_of(api, patient.id) if a.kind == "SUICIDALITY"]
    assert alert.severity == "priority"
    clock.advance(hours=1)
    screened = await submit(api, clock, patient, "madrs-s", answers | {"madrs-s-9": 4})
    assert screened.safety is not None
    assert screened.safety.urgency == "urgent"
    assert screened.patient_actions == ("show_crisis_resources",)


async def test_the_patients_acknowledgement_tap_is_recorded_for_their_own_response_only(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient, other = world.patients["patient_a"], world.patients["patient_a2"]
    instrument = get_instrument("phq9")
    body = {
        "instrumentId": instrument.id,
        "instrumentVersion": instrument.version,
        "answers": [{"linkId": k, "value": v} for k, v in phq9(6, item9=1).items()],
    }
    submitted = await api.post("/api/v1/responses", headers=patient.headers, json=body)
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["safety"]["requiresAcknowledgement"] is True
    response_id = submitted.json()["responseId"]

    ack_url = "/api/v1/me/crisis-acknowledgements"
    tapped = await api.post(ack_url, headers=patient.headers, json={"responseId": response_id})
    assert tapped.status_code == 204, tapped.text
    assert (await audit_actions(api, response_id)).count("crisis_screen.acknowledge") == 1

    stranger = await api.post(ack_url, headers=other.headers, json={"responseId": response_id})
    assert stranger.status_code == 404
    staff = world.staff["clinician_a"].headers
    by_staff = await api.post(ack_url, headers=staff, json={"responseId": response_id})
    assert by_staff.status_code in (401, 403)  # a patient-only route
    bad = await api.post(ack_url, headers=patient.headers, json={"responseId": "x", "more": 1})
    assert bad.status_code == 400
    assert (await audit_actions(api, response_id)).count("crisis_screen.acknowledge") == 1
