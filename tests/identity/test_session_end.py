"""An ended session ends its access tokens at the next request, not up to 15 minutes later.

Logging out, "log out everywhere" (a lost phone), a replayed refresh token and erasure revoke a
refresh-token family; every access token issued under it is then refused (401, audited as
``access.session_ended``), on the read routes (checked by the access middleware) and on the
submission routes (checked in the submission's own first statement), and nothing is stored.
A staff password change ends every other session of that account.
"""

from typing import Any
from uuid import UUID

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from tests.identity.conftest import PatientAccount, World, runtime_of
from tests.responses.keys_world import phq9

_ENDED = "access.session_ended"


async def _count(client: AsyncTestClient[Litestar], sql: str, **params: Any) -> int:
    async with runtime_of(client).require_engine().connect() as connection:
        return int(await connection.scalar(text(sql), params) or 0)


def _db_id(client: AsyncTestClient[Litestar], value: UUID) -> Any:
    postgres = runtime_of(client).settings.database_kind == "postgresql"
    return value if postgres else value.hex


async def _ended_refusals(client: AsyncTestClient[Litestar]) -> int:
    return await _count(
        client,
        "SELECT count(*) FROM audit_events WHERE outcome = 'denied' AND action = :action",
        action=_ENDED,
    )


async def _responses_of(client: AsyncTestClient[Litestar], patient: PatientAccount) -> int:
    return await _count(
        client,
        "SELECT count(*) FROM questionnaire_responses WHERE patient_id = :id",
        id=_db_id(client, patient.id),
    )


def _refused(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


async def _read(
    api: AsyncTestClient[Litestar], patient: PatientAccount, headers: dict[str, str]
) -> Any:
    return await api.get(f"/api/v1/patients/{patient.id}/responses", headers=headers)


async def _submit(api: AsyncTestClient[Litestar], headers: dict[str, str], **extra: str) -> Any:
    answers = phq9(dict.fromkeys(range(1, 10), 1))
    return await api.post("/api/v1/responses", json=answers, headers={**headers, **extra})


async def _submit_fhir(api: AsyncTestClient[Litestar], headers: dict[str, str]) -> Any:
    body = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": "phq9",
        "item": [
            {"linkId": f"phq9-{item}", "answer": [{"valueInteger": 1}]} for item in range(1, 10)
        ],
    }
    return await api.post("/fhir/QuestionnaireResponse", json=body, headers=headers)


async def _assert_session_ended(
    api: AsyncTestClient[Litestar], patient: PatientAccount, headers: dict[str, str]
) -> None:
    """Reading, submitting (JSON and FHIR) and a retried submission are all refused; nothing is
    stored; each refusal is audited."""
    stored = await _responses_of(api, patient)
    refusals = await _ended_refusals(api)
    _refused(await _read(api, patient, headers))
    _refused(await _submit(api, headers))
    _refused(await _submit(api, headers, **{"Idempotency-Key": "retry-after-logout"}))
    _refused(await _submit_fhir(api, headers))
    assert await _responses_of(api, patient) == stored
    assert await _ended_refusals(api) == refusals + 4


async def test_a_live_session_reads_and_submits(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    assert (await _read(api, patient, patient.headers)).status_code == 200
    submitted = await _submit(api, patient.headers)
    assert submitted.status_code == 200, submitted.text
    fhir = await _submit_fhir(api, patient.headers)
    assert fhir.status_code == 200, fhir.text
    assert await _responses_of(api, patient) == 2
    assert await _ended_refusals(api) == 0


async def test_log_out_everywhere_ends_a_lost_phones_access_token_at_once(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    assert (await _submit(api, patient.headers)).status_code == 200
    revoked = await api.post("/api/v1/auth/revoke-all", headers=patient.headers)
    assert revoked.status_code == 204, revoked.text
    await _assert_session_ended(api, patient, patient.headers)
    # Another patient's session is untouched.
    other = world.patients["patient_a2"]
    assert (await _submit(api, other.headers)).status_code == 200
    assert (await _read(api, other, other.headers)).status_code == 200


async def test_logout_ends_that_sessions_access_token(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    logged_out = await api.post("/api/v1/auth/logout", headers=patient.headers)
    assert logged_out.status_code == 204, logged_out.text
    await _assert_session_ended(api, patient, patient.headers)


async def test_a_replayed_refresh_token_ends_the_familys_newest_access_token(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    first = patient.tokens["refresh_token"]
    rotated = await api.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200, rotated.text
    newest = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
    assert (await _submit(api, newest)).status_code == 200
    # A stale copy of the first refresh token comes back: the client or a thief holds it, and
    # the whole family, including the access token just issued, ends.
    replay = await api.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401
    await _assert_session_ended(api, patient, newest)
    await _assert_session_ended(api, patient, patient.headers)


async def test_erasure_ends_the_patients_sessions(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a2"]
    admin = world.staff["admin_a"]
    erased = await api.delete(f"/api/v1/patients/{patient.id}", headers=admin.headers)
    assert erased.status_code == 204, erased.text
    await _assert_session_ended(api, patient, patient.headers)


async def test_staff_logout_ends_only_that_sessions_access_token(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    doc = world.staff["clinician_a"]
    patient = world.patients["patient_a"]
    other = await api.post(
        "/api/v1/auth/staff/login", json={"email": doc.email, "password": doc.password}
    )
    assert other.status_code == 200, other.text
    other_headers = {"Authorization": f"Bearer {other.json()['tokens']['access_token']}"}
    assert (await _read(api, patient, doc.headers)).status_code == 200
    logged_out = await api.post("/api/v1/auth/logout", headers=doc.headers)
    assert logged_out.status_code == 204, logged_out.text
    _refused(await _read(api, patient, doc.headers))
    _refused(await api.get("/api/v1/alerts", headers=doc.headers))
    assert await _ended_refusals(api) == 2
    # The same clinician's other login goes on working.
    assert (await _read(api, patient, other_headers)).status_code == 200
    assert (await api.get("/api/v1/alerts", headers=other_headers)).status_code == 200


async def test_a_password_change_signs_out_every_other_session(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    """Whoever signed in with the old password (another browser, someone who learned it) is
    signed out; the session that changed it goes on; the old password no longer signs in."""
    doc = world.staff["clinician_a"]
    patient = world.patients["patient_a"]
    login = {"email": doc.email, "password": doc.password}
    elsewhere = await api.post("/api/v1/auth/staff/login", json=login)
    assert elsewhere.status_code == 200, elsewhere.text
    elsewhere_tokens = elsewhere.json()["tokens"]
    elsewhere_headers = {"Authorization": f"Bearer {elsewhere_tokens['access_token']}"}
    new_password = "a much longer new passphrase"
    changed = await api.post(
        "/api/v1/auth/staff/password",
        json={"current_password": doc.password, "new_password": new_password},
        headers=doc.headers,
    )
    assert changed.status_code == 204, changed.text
    assert (await _read(api, patient, doc.headers)).status_code == 200
    _refused(await _read(api, patient, elsewhere_headers))
    refresh = {"refresh_token": elsewhere_tokens["refresh_token"]}
    _refused(await api.post("/api/v1/auth/refresh", json=refresh))
    kept = await api.post(
        "/api/v1/auth/refresh", json={"refresh_token": doc.tokens["refresh_token"]}
    )
    assert kept.status_code == 200, kept.text
    _refused(await api.post("/api/v1/auth/staff/login", json=login))
    again = await api.post(
        "/api/v1/auth/staff/login", json={"email": doc.email, "password": new_password}
    )
    assert again.status_code == 200, again.text
    # Another staff member's session is untouched.
    admin = world.staff["admin_a"]
    assert (await _read(api, patient, admin.headers)).status_code == 200


async def test_a_refused_password_change_changes_nothing(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    doc = world.staff["clinician_a"]
    patient = world.patients["patient_a"]
    login = {"email": doc.email, "password": doc.password}
    elsewhere = await api.post("/api/v1/auth/staff/login", json=login)
    assert elsewhere.status_code == 200, elsewhere.text
    elsewhere_headers = {"Authorization": f"Bearer {elsewhere.json()['tokens']['access_token']}"}
    wrong = await api.post(
        "/api/v1/auth/staff/password",
        json={"current_password": "not the password", "new_password": "a much longer one"},
        headers=doc.headers,
    )
    _refused(wrong)
    short = await api.post(
        "/api/v1/auth/staff/password",
        json={"current_password": doc.password, "new_password": "short"},
        headers=doc.headers,
    )
    assert short.status_code == 422, short.text
    assert short.headers["content-type"] == "application/problem+json"
    assert (await _read(api, patient, elsewhere_headers)).status_code == 200
    assert (await api.post("/api/v1/auth/staff/login", json=login)).status_code == 200


async def test_the_care_team_signs_a_patient_out_after_a_lost_phone(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    """The patient cannot "log out everywhere" without the phone: their clinic does it. The
    phone's session ends, it gets no more pushes, and a new code enrols the next phone, whose
    session works; the patient's data are untouched."""
    patient = world.patients["patient_a"]
    doc = world.staff["clinician_a"]
    assert (await _submit(api, patient.headers)).status_code == 200
    signed_out = await api.post(f"/api/v1/patients/{patient.id}/sign-out", headers=doc.headers)
    assert signed_out.status_code == 200, signed_out.text
    assert signed_out.json() == {"devices_signed_out": 1}
    await _assert_session_ended(api, patient, patient.headers)
    refresh = {"refresh_token": patient.tokens["refresh_token"]}
    _refused(await api.post("/api/v1/auth/refresh", json=refresh))
    assert (
        await _count(
            api,
            "SELECT count(*) FROM devices WHERE patient_id = :id"
            " AND revoked_at IS NOT NULL AND push_token_ciphertext IS NULL",
            id=_db_id(api, patient.id),
        )
        == 1
    )
    assert (
        await _count(
            api,
            "SELECT count(*) FROM audit_events WHERE action = 'patient.sign_out'"
            " AND resource_id = :id AND outcome = 'success'",
            id=str(patient.id),
        )
        == 1
    )
    code = await api.post(f"/api/v1/patients/{patient.id}/enrolment-code", headers=doc.headers)
    assert code.status_code == 201, code.text
    redeemed = await api.post(
        "/api/v1/enrolment/redeem",
        json={
            "code": code.json()["code"],
            "device": {"platform": "android", "time_zone": "Europe/London", "locale": "en-GB"},
        },
    )
    assert redeemed.status_code == 201, redeemed.text
    new_phone = {"Authorization": f"Bearer {redeemed.json()['tokens']['access_token']}"}
    history = await _read(api, patient, new_phone)
    assert history.status_code == 200, history.text
    assert len(history.json()["items"]) == 1
    assert (await _submit(api, new_phone)).status_code == 200
    # Signing out again finds only the new phone.
    again = await api.post(f"/api/v1/patients/{patient.id}/sign-out", headers=doc.headers)
    assert again.json() == {"devices_signed_out": 1}
    _refused(await _read(api, patient, new_phone))


async def test_signing_out_a_patient_is_for_their_own_clinics_clinical_staff(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    for name in ("clinician_b", "researcher_a"):
        refused = await api.post(
            f"/api/v1/patients/{patient.id}/sign-out", headers=world.staff[name].headers
        )
        assert refused.status_code == 403, (name, refused.text)
    self_service = await api.post(
        f"/api/v1/patients/{patient.id}/sign-out", headers=patient.headers
    )
    assert self_service.status_code == 401, self_service.text
    unknown = await api.post(
        "/api/v1/patients/00000000-0000-4000-8000-000000000000/sign-out",
        headers=world.staff["clinician_a"].headers,
    )
    assert unknown.status_code == 404, unknown.text
    # Nothing ended: the patient still reads and submits.
    assert (await _read(api, patient, patient.headers)).status_code == 200
    assert (await _submit(api, patient.headers)).status_code == 200
