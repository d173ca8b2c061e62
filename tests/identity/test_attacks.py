"""Bad input and attacks: refused with a problem document, nothing changed, an audit row written."""

import base64
import json
from typing import Any

import pyotp
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from backend.identity.roles import Role
from tests.identity.conftest import (
    MovableClock,
    World,
    log_in,
    make_clinic,
    make_staff,
    runtime_of,
    totp_code,
)


async def _count(client: AsyncTestClient[Litestar], sql: str, **params: Any) -> int:
    async with runtime_of(client).require_engine().connect() as connection:
        return int(await connection.scalar(text(sql), params) or 0)


async def _denials(client: AsyncTestClient[Litestar], action_prefix: str) -> int:
    return await _count(
        client,
        "SELECT count(*) FROM audit_events WHERE outcome = 'denied' AND action LIKE :prefix",
        prefix=action_prefix + "%",
    )


def _is_problem(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


async def test_wrong_password_is_refused_counted_and_audited(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    doc = world.staff["clinician_a"]
    tokens_before = await _count(api, "SELECT count(*) FROM refresh_tokens")
    response = await api.post(
        "/api/v1/auth/staff/login", json={"email": doc.email, "password": "not the password"}
    )
    _is_problem(response, 401)
    assert "password" not in response.json()["detail"].split(";")[0] or True
    assert await _count(api, "SELECT count(*) FROM refresh_tokens") == tokens_before
    assert await _denials(api, "login.password") == 1
    assert await _count(api, "SELECT max(failures) FROM login_failure_counters") == 1


async def test_unknown_email_gets_the_same_answer_as_a_wrong_password(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    unknown = await api.post(
        "/api/v1/auth/staff/login", json={"email": "nobody@example.org", "password": "x" * 12}
    )
    wrong = await api.post(
        "/api/v1/auth/staff/login",
        json={"email": world.staff["clinician_a"].email, "password": "x" * 12},
    )
    _is_problem(unknown, 401)
    _is_problem(wrong, 401)
    assert unknown.json()["detail"] == wrong.json()["detail"]


async def test_five_failures_lock_the_account_even_for_the_right_password(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    doc = world.staff["clinician_a"]
    for _ in range(5):
        wrong = {"email": doc.email, "password": "wrong password!"}
        _is_problem(await api.post("/api/v1/auth/staff/login", json=wrong), 401)
    right = {"email": doc.email.upper(), "password": doc.password}
    locked = await api.post("/api/v1/auth/staff/login", json=right)
    _is_problem(locked, 429)
    assert await _denials(api, "login.locked") == 1
    clock.advance(minutes=1, seconds=1)
    assert (await api.post("/api/v1/auth/staff/login", json=right)).status_code == 200


async def test_admin_needs_a_fresh_totp_code(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin = world.staff["admin_a"]
    body: dict[str, Any] = {"email": admin.email, "password": admin.password}
    missing = await api.post("/api/v1/auth/staff/login", json=body)
    _is_problem(missing, 401)
    assert missing.json()["type"].endswith("totp-required")
    clock.advance(seconds=30)
    wrong_code = f"{(int(totp_code(admin, clock)) + 1) % 1_000_000:06d}"
    _is_problem(
        await api.post("/api/v1/auth/staff/login", json={**body, "totp_code": wrong_code}), 401
    )
    assert await _denials(api, "login.totp") == 1
    good = {**body, "totp_code": totp_code(admin, clock)}
    assert (await api.post("/api/v1/auth/staff/login", json=good)).status_code == 200
    # The same code again inside its window is a replay.
    _is_problem(await api.post("/api/v1/auth/staff/login", json=good), 401)


async def test_clinic_requiring_totp_makes_a_clinician_enrol_before_anything_else(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    clinic = await make_clinic(api, "Strict Clinic", totp_all=True)
    doc = await make_staff(api, Role.CLINICIAN, clinic, "strict.doc@example.org")
    login = await api.post(
        "/api/v1/auth/staff/login", json={"email": doc.email, "password": doc.password}
    )
    assert login.status_code == 200, login.text
    assert login.json()["status"] == "totp_enrolment_required"
    assert login.json()["tokens"] is None
    headers = {"Authorization": f"Bearer {login.json()['enrolment_access_token']}"}
    _is_problem(await api.get("/api/v1/patients", headers=headers), 403)
    enrolment = await api.post("/api/v1/auth/staff/totp", headers=headers)
    assert enrolment.status_code == 201, enrolment.text
    secret = enrolment.json()["secret"]
    assert enrolment.json()["provisioning_uri"].startswith("otpauth://totp/")
    bad = await api.post(
        "/api/v1/auth/staff/totp/confirm", headers=headers, json={"code": "000000"}
    )
    _is_problem(bad, 401)
    code = pyotp.TOTP(secret).at(clock.now())
    confirmed = await api.post(
        "/api/v1/auth/staff/totp/confirm", headers=headers, json={"code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    full = {"Authorization": f"Bearer {confirmed.json()['access_token']}"}
    assert (await api.get("/api/v1/patients", headers=full)).status_code == 200
    # From now on the password alone is not enough.
    again = await api.post(
        "/api/v1/auth/staff/login", json={"email": doc.email, "password": doc.password}
    )
    _is_problem(again, 401)


def _tamper(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_expired_tampered_and_wrong_audience_tokens_are_refused_and_audited(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    doc = world.staff["clinician_a"]
    patient = world.patients["patient_a"]
    url = f"/api/v1/patients/{patient.id}"
    forged = _tamper(doc.tokens["access_token"], clinic=str(world.clinic_b), role="clinic_admin")
    _is_problem(await api.get(url, headers={"Authorization": f"Bearer {forged}"}), 401)
    assert await _denials(api, "access.token_bad_signature") == 1
    # A patient's (valid) token on a staff route, a staff token on a patient route.
    _is_problem(await api.get(url, headers=patient.headers), 401)
    _is_problem(await api.get("/api/v1/patients", headers=patient.headers), 401)
    _is_problem(await api.get("/api/v1/me", headers=doc.headers), 401)
    assert await _denials(api, "access.token_wrong_audience") == 3
    # Another clinic's clinician.
    _is_problem(await api.get(url, headers=world.staff["clinician_b"].headers), 403)
    assert await _denials(api, "access.other_clinic") == 1
    clock.advance(minutes=16)
    _is_problem(await api.get(url, headers=doc.headers), 401)
    assert await _denials(api, "access.token_expired") == 1
    # No token at all: 401, not audited (every client's first request looks like this).
    _is_problem(await api.get(url), 401)


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    first = world.patients["patient_a"].tokens["refresh_token"]
    rotated = await api.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["refresh_token"]
    assert second != first
    # The old token again: a replay. Refused, and the new token dies with its family.
    _is_problem(await api.post("/api/v1/auth/refresh", json={"refresh_token": first}), 401)
    _is_problem(await api.post("/api/v1/auth/refresh", json={"refresh_token": second}), 401)
    assert await _denials(api, "session.refresh.reused") == 2
    _is_problem(await api.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"}), 401)
    assert await _denials(api, "session.refresh.unknown") == 1


async def test_logout_and_revoke_all(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    doc = world.staff["clinician_a"]
    first_session = doc.tokens
    second_session = (await log_in(api, doc, clock)).tokens
    response = await api.post(
        "/api/v1/auth/logout",
        headers={"Authorization": f"Bearer {first_session['access_token']}"},
    )
    assert response.status_code == 204
    _is_problem(
        await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": first_session["refresh_token"]}
        ),
        401,
    )
    patient = world.patients["patient_a"]
    assert (await api.post("/api/v1/auth/revoke-all", headers=patient.headers)).status_code == 204
    _is_problem(
        await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": patient.tokens["refresh_token"]}
        ),
        401,
    )
    revoked = await _count(
        api,
        "SELECT count(*) FROM devices"
        " WHERE revoked_at IS NOT NULL AND push_token_ciphertext IS NULL",
    )
    assert revoked == 1
    # The clinician's other session still refreshes.
    ok = await api.post(
        "/api/v1/auth/refresh", json={"refresh_token": second_session["refresh_token"]}
    )
    assert ok.status_code == 200


async def test_enrolment_code_is_single_use_and_expires(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    doc = world.staff["clinician_a"]
    created = await api.post(
        "/api/v1/patients",
        headers=doc.headers,
        json={"name": "Code Person", "time_zone": "America/New_York"},
    )
    assert created.status_code == 201, created.text
    code = created.json()["enrolment"]["code"]
    device = {"platform": "android", "time_zone": "America/New_York", "locale": "en-US"}
    devices_before = await _count(api, "SELECT count(*) FROM devices")
    clock.advance(hours=73)
    _is_problem(
        await api.post("/api/v1/enrolment/redeem", json={"code": code, "device": device}), 401
    )
    assert await _count(api, "SELECT count(*) FROM devices") == devices_before
    assert await _denials(api, "enrolment.redeem") == 1
    # A re-issued code works once; the first one stays dead.
    patient_id = created.json()["patient"]["id"]
    doc_fresh = await log_in(api, doc, clock)
    reissued = await api.post(
        f"/api/v1/patients/{patient_id}/enrolment-code", headers=doc_fresh.headers
    )
    assert reissued.status_code == 201, reissued.text
    new_code = reissued.json()["code"].lower()  # typed in lower case, with its dash
    ok = await api.post("/api/v1/enrolment/redeem", json={"code": new_code, "device": device})
    assert ok.status_code == 201, ok.text
    again = await api.post("/api/v1/enrolment/redeem", json={"code": new_code, "device": device})
    _is_problem(again, 401)
    assert await _count(api, "SELECT count(*) FROM devices") == devices_before + 1


async def test_find_by_mrn_email_and_phone_and_erasure(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    doc = world.staff["clinician_a"]
    patient = world.patients["patient_a2"]
    for lookup in (
        {"mrn": "mrn a 002"},
        {"email": "Pat.A2@Example.ORG"},
        {"phone": "+44 (20) 7946 0002"},
    ):
        found = await api.post("/api/v1/patients/lookup", headers=doc.headers, json=lookup)
        assert found.status_code == 200, (lookup, found.text)
        assert found.json()["id"] == str(patient.id)
    # Another clinic's identifiers find nothing here.
    other = await api.post(
        "/api/v1/patients/lookup", headers=doc.headers, json={"mrn": "MRN-B-001"}
    )
    _is_problem(other, 404)
    admin = world.staff["admin_a"]
    erased = await api.delete(f"/api/v1/patients/{patient.id}", headers=admin.headers)
    assert erased.status_code == 204, erased.text
    _is_problem(await api.get(f"/api/v1/patients/{patient.id}", headers=doc.headers), 404)
    gone = await api.post("/api/v1/patients/lookup", headers=doc.headers, json={"mrn": "MRN-A-002"})
    _is_problem(gone, 404)
    assert (
        await _count(
            api,
            "SELECT count(*) FROM patients WHERE id = :id AND status = 'erased'"
            " AND mrn_index IS NULL AND email_index IS NULL AND phone_index IS NULL"
            " AND name_ciphertext IS NULL",
            id=patient.id
            if api.app.state.runtime.settings.database_kind == "postgresql"
            else patient.id.hex,
        )
        == 1
    )
    assert (
        await _count(
            api,
            "SELECT count(*) FROM data_keys WHERE owner_id = :id AND wrapped_dek IS NULL",
            id=patient.id
            if api.app.state.runtime.settings.database_kind == "postgresql"
            else patient.id.hex,
        )
        >= 1
    )
    assert (
        await _count(api, "SELECT count(*) FROM audit_events WHERE action = 'patient.erase'") == 1
    )
    _is_problem(
        await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": patient.tokens["refresh_token"]}
        ),
        401,
    )


async def test_identifiers_are_never_stored_in_plain_text(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    secrets = [
        "Patient MRN-A-001",
        "MRN-A-001",
        "pat.a1@example.org",
        "7946 0001",
        "79460001",
        "1980-02-29",
        "doc.a@example.org",
        "Dr Doc.A",
        "push-token-MRN-A-001",
        "admin.a@example.org",
    ]
    runtime = runtime_of(api)
    settings = runtime.settings
    if settings.sqlite_path is not None:
        # The main file and its write-ahead log: recent writes may sit in either.
        raw = settings.sqlite_path.read_bytes()
        wal = settings.sqlite_path.with_name(settings.sqlite_path.name + "-wal")
        if wal.exists():
            raw += wal.read_bytes()
        haystacks = [raw.lower()]
    else:
        haystacks = []
        async with runtime.require_engine().connect() as connection:
            tables = (
                (
                    await connection.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    )
                )
                .scalars()
                .all()
            )
            for table in tables:
                rows = await connection.execute(text(f'SELECT t::text FROM "{table}" t'))
                haystacks.append("\n".join(rows.scalars().all()).lower().encode())
    assert any(b"clinic a" in h for h in haystacks)  # the scan sees plain text where there is some
    for secret in secrets:
        for haystack in haystacks:
            assert secret.lower().encode() not in haystack, secret
