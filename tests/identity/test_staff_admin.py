"""A clinic admin controls who has access: staff list, disable / enable, role, care teams.

Through the HTTP API on both databases. A disabled account or a changed role holds from the next
request (the middleware reads the account with every staff token), and the guards refuse with a
409 problem of their own type, changing nothing.
"""

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from backend.identity import staff_admin
from backend.identity.principal import Principal
from backend.identity.roles import Role
from tests.identity.conftest import (
    MovableClock,
    StaffAccount,
    World,
    log_in,
    make_staff,
    runtime_of,
)

STAFF = "/api/v1/clinic/staff"


def _is_problem(response: Any, status: int, problem: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    if problem is not None:
        assert response.json()["type"] == "urn:interlude:problem:" + problem


async def _count(client: AsyncTestClient[Litestar], sql: str, **params: Any) -> int:
    async with runtime_of(client).require_engine().connect() as connection:
        return int(await connection.scalar(text(sql), params) or 0)


async def _audited(client: AsyncTestClient[Litestar], action: str, **where: str) -> int:
    clause = "".join(f" AND {column} = :{column}" for column in where)
    return await _count(
        client,
        f"SELECT count(*) FROM audit_events WHERE action = :action{clause}",
        action=action,
        **where,
    )


async def _staff_row(client: AsyncTestClient[Litestar], staff_id: UUID) -> tuple[str, str]:
    async with runtime_of(client).require_engine().connect() as connection:
        row = (
            await connection.execute(
                text("SELECT status, role FROM staff WHERE id = :id"),
                {"id": _db_id(client, staff_id)},
            )
        ).one()
    return str(row[0]), str(row[1])


def _db_id(client: AsyncTestClient[Litestar], value: UUID) -> UUID | str:
    # SQLite stores UUIDs as 32 hex digits (SQLAlchemy's Uuid type), PostgreSQL as uuid.
    runtime = runtime_of(client)
    return value if runtime.settings.database_kind == "postgresql" else value.hex


async def _live_refresh_tokens(client: AsyncTestClient[Litestar], staff_id: UUID) -> int:
    return await _count(
        client,
        "SELECT count(*) FROM refresh_tokens WHERE staff_id = :id AND revoked_at IS NULL",
        id=_db_id(client, staff_id),
    )


async def _can_read_patients(client: AsyncTestClient[Litestar], account: StaffAccount) -> int:
    return (await client.get("/api/v1/patients", headers=account.headers)).status_code


async def _refresh(client: AsyncTestClient[Litestar], account: StaffAccount) -> int:
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.tokens["refresh_token"]}
    )
    return response.status_code


async def _set_on_call(
    client: AsyncTestClient[Litestar], admin: StaffAccount, *people: StaffAccount
) -> None:
    response = await client.put(
        "/api/v1/clinic/alert-on-call",
        headers=admin.headers,
        json={"staffIds": [str(p.id) for p in people]},
    )
    assert response.status_code == 200, response.text


async def _on_call(client: AsyncTestClient[Litestar], admin: StaffAccount) -> list[str]:
    response = await client.get("/api/v1/clinic/alert-on-call", headers=admin.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["staffIds"])


async def test_admin_lists_their_clinics_staff_page_by_page_and_the_read_is_audited(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    admin = world.staff["admin_a"]
    listed = await api.get(STAFF, headers=admin.headers)
    assert listed.status_code == 200, listed.text
    items = {item["id"]: item for item in listed.json()["items"]}
    clinic_a = {str(world.staff[n].id) for n in ("admin_a", "clinician_a", "researcher_a")}
    assert set(items) == clinic_a  # never clinic B's staff, never the operator
    doc = items[str(world.staff["clinician_a"].id)]
    assert doc["role"] == "clinician"
    assert doc["status"] == "active"
    assert doc["email"] == "doc.a@example.org"
    assert doc["name"] == "Dr Doc.A"
    assert doc["care_team_ids"] == []
    assert doc["on_call"] is False
    assert items[str(admin.id)]["totp_enrolled"] is True
    assert listed.json()["next_cursor"] is None
    assert await _audited(api, "staff.list") == 1

    first = await api.get(STAFF, headers=admin.headers, params={"limit": 2})
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    assert len(first.json()["items"]) == 2
    assert cursor is not None
    rest = await api.get(STAFF, headers=admin.headers, params={"limit": 2, "cursor": cursor})
    assert rest.json()["next_cursor"] is None
    paged = [i["id"] for i in first.json()["items"] + rest.json()["items"]]
    assert paged == sorted(clinic_a, key=UUID)

    one = await api.get(f"{STAFF}/{world.staff['clinician_a'].id}", headers=admin.headers)
    assert one.status_code == 200, one.text
    assert one.json() == doc
    assert await _audited(api, "staff.read") == 1


async def test_only_a_clinic_admin_sees_or_changes_staff(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    doc = world.staff["clinician_a"]
    target = world.staff["researcher_a"].id
    _is_problem(await api.get(STAFF, headers=doc.headers), 403)
    _is_problem(await api.post(f"{STAFF}/{target}/disable", headers=doc.headers), 403)
    researcher = world.staff["researcher_a"]
    _is_problem(await api.post(f"{STAFF}/{doc.id}/disable", headers=researcher.headers), 403)
    assert await _staff_row(api, target) == ("active", "researcher")


async def test_disabling_a_clinician_ends_their_access_at_once_and_is_audited(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    assert await _can_read_patients(api, doc) == 200
    assert await _live_refresh_tokens(api, doc.id) == 1

    disabled = await api.post(f"{STAFF}/{doc.id}/disable", headers=admin.headers)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["status"] == "disabled"
    assert await _staff_row(api, doc.id) == ("disabled", "clinician")
    assert await _audited(api, "staff.disable", resource_id=str(doc.id)) == 1

    # The access token they hold is refused at the next request, not 15 minutes later.
    _is_problem(await api.get("/api/v1/patients", headers=doc.headers), 401)
    assert (
        await _count(
            api, "SELECT count(*) FROM audit_events WHERE action = 'access.account_inactive'"
        )
        == 1
    )
    assert await _live_refresh_tokens(api, doc.id) == 0
    assert await _refresh(api, doc) == 401
    login = await api.post(
        "/api/v1/auth/staff/login", json={"email": doc.email, "password": doc.password}
    )
    _is_problem(login, 401)

    # Disabling again changes nothing and records nothing.
    again = await api.post(f"{STAFF}/{doc.id}/disable", headers=admin.headers)
    assert again.status_code == 200, again.text
    assert await _audited(api, "staff.disable") == 1

    listed = await api.get(STAFF, headers=admin.headers)
    statuses = {i["id"]: i["status"] for i in listed.json()["items"]}
    assert statuses[str(doc.id)] == "disabled"


async def test_a_re_enabled_clinician_signs_in_again_but_old_sessions_stay_ended(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    old = dict(doc.tokens)
    assert (await api.post(f"{STAFF}/{doc.id}/disable", headers=admin.headers)).status_code == 200
    enabled = await api.post(f"{STAFF}/{doc.id}/enable", headers=admin.headers)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["status"] == "active"
    assert await _audited(api, "staff.enable", resource_id=str(doc.id)) == 1
    # The refresh token revoked by the disable stays revoked.
    assert await _refresh(api, doc) == 401
    await log_in(api, doc, clock)
    assert doc.tokens != old
    assert await _can_read_patients(api, doc) == 200
    again = await api.post(f"{STAFF}/{doc.id}/enable", headers=admin.headers)
    assert again.status_code == 200
    assert await _audited(api, "staff.enable") == 1


async def test_an_admin_cannot_disable_or_demote_themself(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    admin = world.staff["admin_a"]
    _is_problem(
        await api.post(f"{STAFF}/{admin.id}/disable", headers=admin.headers), 409, "own-account"
    )
    _is_problem(
        await api.put(
            f"{STAFF}/{admin.id}/role", headers=admin.headers, json={"role": "clinician"}
        ),
        409,
        "own-account",
    )
    assert await _staff_row(api, admin.id) == ("active", "clinic_admin")
    assert await _can_read_patients(api, admin) == 200
    assert await _audited(api, "staff.disable") + await _audited(api, "staff.role_change") == 0


async def test_one_admin_may_disable_another_but_never_the_clinics_last(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin = world.staff["admin_a"]
    second = await log_in(
        api, await make_staff(api, Role.CLINIC_ADMIN, world.clinic_a, "admin2.a@example.org"), clock
    )
    disabled = await api.post(f"{STAFF}/{admin.id}/disable", headers=second.headers)
    assert disabled.status_code == 200, disabled.text
    _is_problem(await api.get(STAFF, headers=admin.headers), 401)

    # Through the API the caller is always another active admin, so the last-admin guard is
    # reached by a caller whose own account no longer counts: here, one called directly.
    runtime = runtime_of(api)
    ghost = Principal(
        subject_id=uuid4(), role=Role.CLINIC_ADMIN, clinic_id=world.clinic_a, session_id=uuid4()
    )
    async with runtime.require_sessionmaker()() as session:
        with pytest.raises(staff_admin.LastClinicAdmin):
            await staff_admin.disable_staff(session, runtime, ghost, second.id)
    async with runtime.require_sessionmaker()() as session:
        with pytest.raises(staff_admin.LastClinicAdmin):
            await staff_admin.change_role(session, runtime, ghost, second.id, Role.RESEARCHER)
    assert await _staff_row(api, second.id) == ("active", "clinic_admin")
    # A disabled admin does not count: re-enabled, there are two again, and the guard lets go.
    assert (await api.post(f"{STAFF}/{admin.id}/enable", headers=second.headers)).status_code == 200
    async with runtime.require_sessionmaker()() as session:
        await staff_admin.change_role(session, runtime, ghost, second.id, Role.CLINICIAN)
        await session.rollback()


async def test_the_only_person_on_call_cannot_be_disabled_until_another_is_named(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    await _set_on_call(api, admin, doc)
    refused = await api.post(f"{STAFF}/{doc.id}/disable", headers=admin.headers)
    _is_problem(refused, 409, "last-on-call")
    assert "name another on-call first" in refused.json()["detail"]
    assert await _staff_row(api, doc.id) == ("active", "clinician")
    assert await _live_refresh_tokens(api, doc.id) == 1
    assert await _can_read_patients(api, doc) == 200
    assert await _on_call(api, admin) == [str(doc.id)]

    await _set_on_call(api, admin, doc, admin)
    updates_before = await _audited(api, "alert_on_call.update")
    disabled = await api.post(f"{STAFF}/{doc.id}/disable", headers=admin.headers)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["on_call"] is False
    assert await _on_call(api, admin) == [str(admin.id)]
    assert await _audited(api, "alert_on_call.update") == updates_before + 1
    # Re-enabled, they are not put back on call: that is the admin's decision again.
    assert (await api.post(f"{STAFF}/{doc.id}/enable", headers=admin.headers)).status_code == 200
    assert await _on_call(api, admin) == [str(admin.id)]


async def test_escalation_never_reaches_a_disabled_colleague(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    from backend.domain.alerts.routing import escalation_chain

    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    second = await make_staff(api, Role.CLINICIAN, world.clinic_a, "doc2.a@example.org")
    await _set_on_call(api, admin, doc, second, admin)
    assert (await api.post(f"{STAFF}/{doc.id}/disable", headers=admin.headers)).status_code == 200
    runtime = runtime_of(api)
    async with runtime.require_engine().connect() as connection:
        chain = await escalation_chain(connection, world.clinic_a)
    assert chain == [[second.id], [admin.id], [admin.id]]
    assert all(doc.id not in level for level in chain)


async def test_a_role_change_ends_sessions_and_holds_from_the_next_login(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    promoted = await api.put(
        f"{STAFF}/{doc.id}/role", headers=admin.headers, json={"role": "clinic_admin"}
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "clinic_admin"
    assert await _staff_row(api, doc.id) == ("active", "clinic_admin")
    assert await _audited(api, "staff.role_change", resource_id=str(doc.id)) == 1
    # The token naming the old role is refused now; the session cannot be renewed.
    _is_problem(await api.get("/api/v1/patients", headers=doc.headers), 401)
    assert (
        await _count(api, "SELECT count(*) FROM audit_events WHERE action = 'access.role_changed'")
        == 1
    )
    assert await _refresh(api, doc) == 401
    # A clinic admin always needs a second factor: the next login asks them to enrol one.
    login = await api.post(
        "/api/v1/auth/staff/login", json={"email": doc.email, "password": doc.password}
    )
    assert login.status_code == 200, login.text
    assert login.json()["status"] == "totp_enrolment_required"

    same = await api.put(
        f"{STAFF}/{doc.id}/role", headers=admin.headers, json={"role": "clinic_admin"}
    )
    assert same.status_code == 200
    assert await _audited(api, "staff.role_change") == 1


async def test_a_clinician_made_researcher_leaves_care_teams_and_the_on_call_list(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    team = await api.post("/api/v1/clinic/care-teams", headers=admin.headers, json={"name": "Ward"})
    team_id = team.json()["id"]
    added = await api.post(
        f"/api/v1/clinic/care-teams/{team_id}/members",
        headers=admin.headers,
        json={"staff_id": str(doc.id)},
    )
    assert added.status_code == 200, added.text
    await _set_on_call(api, admin, doc)
    # The only person on call cannot become someone who takes no alerts either.
    refused = await api.put(
        f"{STAFF}/{doc.id}/role", headers=admin.headers, json={"role": "researcher"}
    )
    _is_problem(refused, 409, "last-on-call")
    assert await _staff_row(api, doc.id) == ("active", "clinician")
    assert await _count(api, "SELECT count(*) FROM care_team_memberships") == 1

    await _set_on_call(api, admin, admin, doc)
    changed = await api.put(
        f"{STAFF}/{doc.id}/role", headers=admin.headers, json={"role": "researcher"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["care_team_ids"] == []
    assert changed.json()["on_call"] is False
    assert await _on_call(api, admin) == [str(admin.id)]
    teams = await api.get("/api/v1/clinic/care-teams", headers=admin.headers)
    assert teams.json()[0]["member_ids"] == []
    assert await _audited(api, "care_team.remove_member", resource_id=team_id) == 1


async def test_admin_takes_a_member_off_a_care_team(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    team = await api.post("/api/v1/clinic/care-teams", headers=admin.headers, json={"name": "Ward"})
    team_id = team.json()["id"]
    members = f"/api/v1/clinic/care-teams/{team_id}/members"
    for person in (doc, admin):
        added = await api.post(members, headers=admin.headers, json={"staff_id": str(person.id)})
        assert added.status_code == 200, added.text
    listed = await api.get(STAFF, headers=admin.headers)
    teams = {i["id"]: i["care_team_ids"] for i in listed.json()["items"]}
    assert teams[str(doc.id)] == [team_id]

    removed = await api.delete(f"{members}/{doc.id}", headers=admin.headers)
    assert removed.status_code == 200, removed.text
    assert removed.json()["member_ids"] == [str(admin.id)]
    assert await _audited(api, "care_team.remove_member", resource_id=team_id) == 1
    # Removing someone who is not on the team changes nothing (as adding twice does).
    again = await api.delete(f"{members}/{doc.id}", headers=admin.headers)
    assert again.status_code == 200, again.text
    assert again.json()["member_ids"] == [str(admin.id)]
    assert await _audited(api, "care_team.remove_member") == 1

    _is_problem(
        await api.delete(
            f"/api/v1/clinic/care-teams/{uuid4()}/members/{admin.id}", headers=admin.headers
        ),
        404,
    )
    _is_problem(await api.delete(f"{members}/{uuid4()}", headers=admin.headers), 404)
    other_clinic = world.staff["clinician_b"].id
    _is_problem(await api.delete(f"{members}/{other_clinic}", headers=admin.headers), 404)
    _is_problem(await api.delete(f"{members}/{admin.id}", headers=doc.headers), 403)
    assert await _count(api, "SELECT count(*) FROM care_team_memberships") == 1


async def test_another_clinics_admin_finds_no_such_staff_member(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    other_admin, doc = world.staff["admin_b"], world.staff["clinician_a"]
    for response in (
        await api.get(f"{STAFF}/{doc.id}", headers=other_admin.headers),
        await api.post(f"{STAFF}/{doc.id}/disable", headers=other_admin.headers),
        await api.post(f"{STAFF}/{doc.id}/enable", headers=other_admin.headers),
        await api.put(
            f"{STAFF}/{doc.id}/role", headers=other_admin.headers, json={"role": "researcher"}
        ),
        await api.post(
            f"{STAFF}/{world.staff['operator'].id}/disable", headers=other_admin.headers
        ),
        await api.post(f"{STAFF}/{uuid4()}/disable", headers=other_admin.headers),
    ):
        _is_problem(response, 404)
        # The same answer for an id that exists elsewhere and one that exists nowhere.
        assert response.json()["detail"] == "no such staff member in this clinic"
    assert await _staff_row(api, doc.id) == ("active", "clinician")
    assert await _can_read_patients(api, doc) == 200


@pytest.mark.parametrize(
    "body",
    [
        {"role": "operator"},
        {"role": "patient"},
        {"role": "superuser"},
        {"role": None},
        {},
        {"role": "clinician", "status": "active"},
        ["clinician"],
    ],
)
async def test_a_bad_role_change_is_a_problem_and_changes_nothing(
    api: AsyncTestClient[Litestar], world: World, body: Any
) -> None:
    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    response = await api.put(f"{STAFF}/{doc.id}/role", headers=admin.headers, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await _staff_row(api, doc.id) == ("active", "clinician")
    assert await _live_refresh_tokens(api, doc.id) == 1
    assert await _audited(api, "staff.role_change") == 0


async def test_malformed_ids_and_cursors_are_problems(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    admin = world.staff["admin_a"]
    assert (await api.post(f"{STAFF}/not-a-uuid/disable", headers=admin.headers)).status_code == 404
    _is_problem(await api.get(STAFF, headers=admin.headers, params={"cursor": "nope"}), 422)
    bad_limit = await api.get(STAFF, headers=admin.headers, params={"limit": 0})
    assert bad_limit.status_code == 400, bad_limit.text


async def test_the_staff_list_shows_each_accounts_last_sign_in(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin, doc = world.staff["admin_a"], world.staff["clinician_a"]
    newcomer = await make_staff(api, Role.CLINICIAN, world.clinic_a, "new.doc@example.org")

    def last_login(listed: Any, account: StaffAccount) -> Any:
        return next(i for i in listed.json()["items"] if i["id"] == str(account.id))[
            "last_login_at"
        ]

    before = await api.get(STAFF, headers=admin.headers)
    assert before.status_code == 200, before.text
    assert last_login(before, newcomer) is None  # never signed in
    assert last_login(before, doc) is not None  # the world signed everyone in

    clock.advance(hours=5)
    await log_in(api, admin, clock)  # the admin's earlier session has expired
    await log_in(api, doc, clock)
    signed_in_at = clock.now()
    # A wrong password is not a sign-in.
    refused = await api.post(
        "/api/v1/auth/staff/login", json={"email": newcomer.email, "password": "wrong " * 3}
    )
    assert refused.status_code == 401, refused.text
    after = await api.get(STAFF, headers=admin.headers)
    assert after.status_code == 200, after.text
    assert datetime.fromisoformat(last_login(after, doc)) == signed_in_at
    assert last_login(after, newcomer) is None
    one = await api.get(f"{STAFF}/{doc.id}", headers=admin.headers)
    assert datetime.fromisoformat(one.json()["last_login_at"]) == signed_in_at
