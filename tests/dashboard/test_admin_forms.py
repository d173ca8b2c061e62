"""Clinic administration and TOTP enrolment through the dashboard's forms, in headless Chromium.

A clinic admin creates a clinician's account (the one-time password is shown once), puts them
first on the on-call list, saves a new version of the alert parameters and a check-in protocol
override (then removes it); a refused change (a version used before, JSON that does not parse)
says why and changes nothing. The new clinician
logs in with the one-time password, is sent to set up an authenticator app, sees the QR code and
the key once, is refused a wrong code and gets in with a right one; the key is in no log line and
no audit row. The same routes refuse a clinician (the API's access rule) and a form without the
CSRF token. From the staff table and the care-team list, an admin disables and re-enables an
account, changes a role (its sessions end; a role that takes no alerts leaves its care teams) and
takes someone off a team.
"""

import logging
import uuid
from pathlib import Path
from typing import Any, Final, cast

import httpx
import pyotp
import pytest
from sqlalchemy import Table, func, select

from backend.audit.service import AUDIT_EVENTS
from backend.dashboard.queries import OVERRIDES, STAFF
from backend.dashboard.session import ACCESS_COOKIE, DASHBOARD_PATH, REFRESH_COOKIE
from backend.db.models.clinic import CareTeamMembership, Clinic
from backend.domain.alerts.store import ON_CALL
from backend.identity import sessions
from backend.identity.roles import Role
from backend.identity.schemas import TokenPair
from tests.dashboard.browsing import DESKTOP, log_in, opened_page, scalar
from tests.dashboard.conftest import LiveService

CLINICS: Final = cast(Table, Clinic.__table__)  # type: ignore[attr-defined]
MEMBERSHIPS: Final = cast(Table, CareTeamMembership.__table__)  # type: ignore[attr-defined]
NEW_EMAIL = "new.clinician@demo.interlude.example"
N2O_OVERRIDE = """{
  "id": "clinic-n2o", "version": "2.0.0", "extends": {"id": "n2o-default", "version": "1.0.0"},
  "source": "The clinic adds a 48 h check",
  "steps": {"afterSession": [{"id": "48h", "label": "+48 h", "offset": "PT48H",
    "opens": "PT40H", "closes": "PT56H", "instruments": ["madrs-s"]}]}
}"""


async def _audited(live: LiveService, action: str, actor_id: uuid.UUID) -> int:
    count = await scalar(
        live,
        select(func.count())
        .select_from(AUDIT_EVENTS)
        .where(AUDIT_EVENTS.c.action == action, AUDIT_EVENTS.c.actor_id == str(actor_id)),
    )
    return int(count)


async def _staff_id(live: LiveService, role: str) -> uuid.UUID:
    found = await scalar(
        live, select(STAFF.c.id).where(STAFF.c.role == role).order_by(STAFF.c.created_at)
    )
    assert isinstance(found, uuid.UUID)
    return found


async def _token_pair(live: LiveService, role: Role, staff_id: uuid.UUID) -> TokenPair:
    runtime = live.runtime
    async with runtime.require_sessionmaker()() as session:
        pair = await sessions.start_session(
            session, runtime, role=role, subject_id=staff_id, clinic_id=live.demo.clinic_id
        )
        await session.commit()
    return pair


async def _bearer(live: LiveService, role: Role, staff_id: uuid.UUID) -> str:
    return (await _token_pair(live, role, staff_id)).access_token


async def test_admin_forms_and_a_new_clinicians_totp_enrolment(
    live: LiveService, browser: Any, artifacts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin_id = await _staff_id(live, "clinic_admin")

    async with opened_page(browser, DESKTOP) as page:
        await log_in(page, live, Role.CLINIC_ADMIN, next_path="/dashboard/admin")

        # A new clinician's account; the one-time password is on this response only.
        await page.click("text=Add a staff member")
        await page.fill("#staff-name", "Dr Nova New")
        await page.fill("#staff-email", NEW_EMAIL)
        await page.select_option("#staff-role", "clinician")
        await page.click("text=Create account")
        one_time_password = (await page.locator("#one-time-password").inner_text()).strip()
        assert len(one_time_password) >= 12
        assert await _audited(live, "staff.create", admin_id) == 1
        new_id = await scalar(live, select(STAFF.c.id).order_by(STAFF.c.created_at.desc()))

        # The on-call list: the new clinician first.
        await page.goto(live.base_url + "/dashboard/admin/")
        await page.select_option("#on-call-1", str(new_id))
        await page.click("text=Save on-call list")
        await page.wait_for_url(live.base_url + "/dashboard/admin#oncall")
        first = await scalar(
            live,
            select(ON_CALL.c.staff_id)
            .where(ON_CALL.c.clinic_id == live.demo.clinic_id)
            .order_by(ON_CALL.c.position),
        )
        assert first == new_id
        assert await _audited(live, "alert_on_call.update", admin_id) == 1

        # The same person twice is refused with the reason, and the list stays as it was.
        await page.select_option("#on-call-2", str(new_id))
        await page.click("text=Save on-call list")
        assert "appears twice" in await page.locator("#outcome-oncall").inner_text()
        assert await _audited(live, "alert_on_call.update", admin_id) == 1

        # A new version of the alert parameters.
        override = '{"parameterSet": "demo", "version": "7", "slaMinutes": {"urgent": 30}}'
        await page.goto(live.base_url + "/dashboard/admin/")
        await page.fill("#parameters-document", override)
        await page.click("text=Save as a new version")
        await page.wait_for_url(live.base_url + "/dashboard/admin#parameters")
        version = await page.locator("#parameter-version").inner_text()
        assert version == "interlude-default@1.2.0+demo@7"
        assert await page.locator("#parameter-history tbody tr").count() == 1
        # The same version again, then JSON that does not parse: refused, nothing stored.
        for text, reason in ((override, "exists already"), ('{"version": ', "not valid JSON")):
            await page.fill("#parameters-document", text)
            await page.click("text=Save as a new version")
            assert reason in await page.locator("#outcome-parameters").inner_text()
            assert await page.input_value("#parameters-document") == text  # kept for fixing
        assert await scalar(live, select(func.count()).select_from(OVERRIDES)) == 1
        assert await _audited(live, "alert_parameters.update", admin_id) == 1

        # A clinic override of the N2O check-in protocol, then back to the shipped default.
        await page.goto(live.base_url + "/dashboard/admin/")
        await page.click("#protocol-n2o summary")
        await page.fill("#protocol-document-n2o", N2O_OVERRIDE)
        await page.click("#protocol-n2o >> text=Save override")
        await page.wait_for_url(live.base_url + "/dashboard/admin#protocols")
        summary = await page.locator("#protocol-n2o summary").inner_text()
        assert "clinic-n2o v2.0.0" in summary
        assert await _audited(live, "check_in_protocol.update", admin_id) == 1
        await page.click("#protocol-n2o summary")
        await page.screenshot(path=str(artifacts / "admin.png"), full_page=True)
        await page.click("text=Go back to the shipped default")
        await page.wait_for_url(live.base_url + "/dashboard/admin#protocols")
        assert "shipped default" in await page.locator("#protocol-n2o summary").inner_text()
        assert await _audited(live, "check_in_protocol.delete", admin_id) == 1

        # No token, no change (CSRF), even with the admin's session cookies.
        refused = await page.request.post(
            live.base_url + "/dashboard/admin/on-call", form={"staff_id": str(admin_id)}
        )
        assert refused.status == 403

    # A clinician is refused these routes, as by the API (a bearer token skips CSRF, not access).
    clinician = await _bearer(live, Role.CLINICIAN, await _staff_id(live, "clinician"))
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as client:
        answer = await client.post(
            "/dashboard/admin/on-call",
            data={"staff_id": str(admin_id)},
            headers={"Authorization": f"Bearer {clinician}"},
        )
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"

    # The new clinician: password only, then the enrolment page.
    async with opened_page(browser, DESKTOP) as page:
        await page.goto(live.base_url + "/dashboard/login")
        await page.fill("#email", NEW_EMAIL)
        await page.fill("#password", one_time_password)
        await page.click("button[type=submit]")
        await page.wait_for_url(live.base_url + "/dashboard/totp")
        # The enrolment-stage session reaches nothing else.
        await page.goto(live.base_url + "/dashboard/")
        assert "/dashboard/login" in page.url
        await page.goto(live.base_url + "/dashboard/totp")
        await page.click("text=Show my new key")
        await page.locator("img.qr").wait_for()
        assert await page.locator("img.qr").get_attribute("alt")
        secret = "".join((await page.locator("#totp-secret").inner_text()).split())
        assert len(secret) == 32
        assert secret not in page.url
        await page.screenshot(path=str(artifacts / "totp-enrolment.png"), full_page=True)

        wrong = f"{(int(pyotp.TOTP(secret).now()) + 1) % 1_000_000:06d}"
        await page.fill("#code", wrong)
        await page.click("text=Confirm and continue")
        assert "not correct" in await page.locator("#totp-error").inner_text()
        await page.fill("#code", pyotp.TOTP(secret).now())
        await page.click("text=Confirm and continue")
        await page.wait_for_url(live.base_url + "/dashboard/")
        assert await page.locator("h1").inner_text() == "Alert inbox"
        cookies = {c["name"] for c in await page.context.cookies()}
        assert "interlude_totp_enrolment" not in cookies
        # The one console error is the wrong code's 422 page (no CSP violation, no script error).
        assert len(page.console_errors) == 1, page.console_errors
        assert "status of 422" in page.console_errors[0], page.console_errors

    confirmed = await scalar(live, select(STAFF.c.totp_confirmed_at).where(STAFF.c.id == new_id))
    assert confirmed is not None
    assert await _audited(live, "totp.confirmed", new_id) == 1
    denied = await scalar(
        live,
        select(func.count())
        .select_from(AUDIT_EVENTS)
        .where(AUDIT_EVENTS.c.action == "totp.confirm", AUDIT_EVENTS.c.outcome == "denied"),
    )
    assert denied == 1
    # The key appears in no log record and no audit row.
    assert caplog.records, "the service's log records were not captured"
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.__dict__)
    async with live.runtime.require_engine().connect() as connection:
        rows = (await connection.execute(select(AUDIT_EVENTS))).all()
    assert rows
    assert all(secret not in repr(row) for row in rows)


async def test_a_clinician_replaces_their_authenticator(live: LiveService, browser: Any) -> None:
    clinician_id = await _staff_id(live, "clinician")
    before = await scalar(
        live, select(STAFF.c.totp_secret_ciphertext).where(STAFF.c.id == clinician_id)
    )
    async with opened_page(browser, DESKTOP) as page:
        await log_in(page, live, Role.CLINICIAN, next_path="/dashboard/")
        await page.click("header >> text=Authenticator")
        await page.wait_for_url(live.base_url + "/dashboard/totp")
        await page.click("text=Show my new key")
        secret = "".join((await page.locator("#totp-secret").inner_text()).split())
        old_secret = live.demo.login(Role.CLINICIAN).totp_secret
        assert secret != old_secret
        await page.fill("#code", pyotp.TOTP(secret).now())
        await page.click("text=Confirm and continue")
        await page.wait_for_url(live.base_url + "/dashboard/")
        # The new session works.
        assert (await page.goto(live.base_url + "/dashboard/patients")) is not None
        assert await page.locator("h1").inner_text() == "Patients"
        assert page.console_errors == [], page.console_errors
    after = await scalar(
        live, select(STAFF.c.totp_secret_ciphertext).where(STAFF.c.id == clinician_id)
    )
    assert after != before
    assert await _audited(live, "totp.confirmed", clinician_id) == 1


async def _first_on_call(live: LiveService) -> object:
    return await scalar(
        live,
        select(ON_CALL.c.staff_id)
        .where(ON_CALL.c.clinic_id == live.demo.clinic_id)
        .order_by(ON_CALL.c.position),
    )


async def test_a_save_from_a_page_another_save_outdated_is_refused(
    live: LiveService, browser: Any
) -> None:
    """Two tabs show the same on-call list and parameters; the first saves; the second's save of
    what it showed is refused with the reason (as the API's If-Match: 412) instead of silently
    replacing the first one's change, and its page then shows the list in force."""
    admin_id = await _staff_id(live, "clinic_admin")
    clinician_id = await _staff_id(live, "clinician")
    async with opened_page(browser, DESKTOP) as first:
        await log_in(first, live, Role.CLINIC_ADMIN, next_path="/dashboard/admin")
        second = await first.context.new_page()
        await second.goto(live.base_url + "/dashboard/admin/")

        await first.select_option("#on-call-1", str(clinician_id))
        await first.click("text=Save on-call list")
        await first.wait_for_url(live.base_url + "/dashboard/admin#oncall")
        assert await _first_on_call(live) == clinician_id

        await second.select_option("#on-call-1", str(admin_id))
        async with second.expect_response(lambda r: r.url.endswith("/admin/on-call")) as info:
            await second.click("text=Save on-call list")
        assert (await info.value).status == 412
        assert "changed since it was read" in await second.locator("#outcome-oncall").inner_text()
        assert await _first_on_call(live) == clinician_id
        # The refused page shows the list in force; a save from it goes through.
        assert await second.input_value("#on-call-1") == str(clinician_id)
        await second.select_option("#on-call-1", str(admin_id))
        await second.click("text=Save on-call list")
        await second.wait_for_url(live.base_url + "/dashboard/admin#oncall")
        assert await _first_on_call(live) == admin_id
        assert await _audited(live, "alert_on_call.update", admin_id) == 2

        # The same for the alert parameters; the refused draft is kept for re-applying.
        await first.goto(live.base_url + "/dashboard/admin/")
        await second.goto(live.base_url + "/dashboard/admin/")
        await first.fill("#parameters-document", '{"parameterSet": "demo", "version": "8"}')
        await first.click("text=Save as a new version")
        await first.wait_for_url(live.base_url + "/dashboard/admin#parameters")
        stale = '{"parameterSet": "demo", "version": "9", "slaMinutes": {"urgent": 20}}'
        await second.fill("#parameters-document", stale)
        async with second.expect_response(lambda r: "/admin/alert-parameters" in r.url) as info:
            await second.click("text=Save as a new version")
        assert (await info.value).status == 412
        outcome = await second.locator("#outcome-parameters").inner_text()
        assert "changed since it was read" in outcome
        assert await second.input_value("#parameters-document") == stale
        assert await second.locator("#parameter-version").inner_text() == (
            "interlude-default@1.2.0+demo@8"
        )
        assert await scalar(live, select(func.count()).select_from(OVERRIDES)) == 1
        await second.click("text=Save as a new version")
        await second.wait_for_url(live.base_url + "/dashboard/admin#parameters")
        assert await scalar(live, select(func.count()).select_from(OVERRIDES)) == 2

        # And for a check-in protocol: a save, then a removal, from a page another save outdated.
        await first.goto(live.base_url + "/dashboard/admin/")
        await second.goto(live.base_url + "/dashboard/admin/")
        await first.click("#protocol-n2o summary")
        await first.fill("#protocol-document-n2o", N2O_OVERRIDE)
        await first.click("#protocol-n2o >> text=Save override")
        await first.wait_for_url(live.base_url + "/dashboard/admin#protocols")
        await second.click("#protocol-n2o summary")
        stale_protocol = N2O_OVERRIDE.replace('"2.0.0"', '"2.0.1"')
        await second.fill("#protocol-document-n2o", stale_protocol)
        async with second.expect_response(lambda r: r.url.endswith("/protocols/n2o")) as info:
            await second.click("#protocol-n2o >> text=Save override")
        assert (await info.value).status == 412
        assert "changed since it was read" in (
            await second.locator("#outcome-protocols").inner_text()
        )
        assert "clinic-n2o v2.0.0" in await second.locator("#protocol-n2o summary").inner_text()
        # Both refreshed; the first saves again, so the second's removal is of an outdated page.
        await first.goto(live.base_url + "/dashboard/admin/")
        await second.goto(live.base_url + "/dashboard/admin/")
        await first.click("#protocol-n2o summary")
        await first.fill("#protocol-document-n2o", stale_protocol)
        await first.click("#protocol-n2o >> text=Save override")
        await first.wait_for_url(live.base_url + "/dashboard/admin#protocols")
        await second.click("#protocol-n2o summary")
        async with second.expect_response(lambda r: r.url.endswith("/n2o/remove")) as info:
            await second.click("text=Go back to the shipped default")
        assert (await info.value).status == 412
        assert "clinic-n2o v2.0.1" in await second.locator("#protocol-n2o summary").inner_text()


async def _totp_required(live: LiveService) -> object:
    return await scalar(
        live,
        select(CLINICS.c.totp_required_for_all_staff).where(CLINICS.c.id == live.demo.clinic_id),
    )


async def test_a_settings_save_from_a_page_another_admins_save_outdated_is_refused(
    live: LiveService, browser: Any
) -> None:
    """Two admins (two login sessions) open the clinic settings; the first switches the TOTP rule
    off; the second's save of the page it loaded is refused (412, nothing written, the same as
    the API's If-Match) instead of switching it back on, and its page then shows the rule in
    force, from which a save goes through."""
    admin_id = await _staff_id(live, "clinic_admin")
    assert await _totp_required(live) is True
    async with opened_page(browser, DESKTOP) as first, opened_page(browser, DESKTOP) as second:
        await log_in(first, live, Role.CLINIC_ADMIN, next_path="/dashboard/admin")
        # A second login would reuse the TOTP code, which is refused (replay): the second
        # session is started by the identity service and handed to the browser as its cookies.
        pair = await _token_pair(live, Role.CLINIC_ADMIN, admin_id)
        await second.context.add_cookies(
            [
                {"name": name, "value": value, "url": live.base_url + DASHBOARD_PATH}
                for name, value in (
                    (ACCESS_COOKIE, pair.access_token),
                    (REFRESH_COOKIE, pair.refresh_token),
                )
            ]
        )
        await second.goto(live.base_url + "/dashboard/admin/")

        await first.uncheck("#totp-required")
        await first.click("#settings-form >> text=Save")
        await first.wait_for_url(live.base_url + "/dashboard/admin#staff")
        assert await _totp_required(live) is False

        async with second.expect_response(lambda r: r.url.endswith("/admin/settings")) as info:
            await second.click("#settings-form >> text=Save")
        assert (await info.value).status == 412
        outcome = await second.locator("#outcome-settings").inner_text()
        assert "changed since it was read" in outcome
        assert "current version" in outcome
        assert await _totp_required(live) is False
        assert await _audited(live, "clinic.settings", admin_id) == 1

        # The refused page shows the settings in force; a save from it goes through.
        assert not await second.is_checked("#totp-required")
        await second.check("#totp-required")
        await second.click("#settings-form >> text=Save")
        await second.wait_for_url(live.base_url + "/dashboard/admin#staff")
        assert await _totp_required(live) is True
        assert await _audited(live, "clinic.settings", admin_id) == 2


async def test_an_admin_disables_and_re_enables_a_clinician_from_the_staff_table(
    live: LiveService,
) -> None:
    admin_id = await _staff_id(live, "clinic_admin")
    clinician_id = await _staff_id(live, "clinician")
    admin = await _bearer(live, Role.CLINIC_ADMIN, admin_id)
    clinician = await _bearer(live, Role.CLINICIAN, clinician_id)
    headers = {"Authorization": f"Bearer {admin}"}
    status = select(STAFF.c.status).where(STAFF.c.id == clinician_id)
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as client:
        page = await client.get("/dashboard/admin", headers=headers)
        assert f'action="/dashboard/admin/staff/{clinician_id}/disable"' in page.text
        # Dormant accounts stand out: each row says when that person last signed in.
        assert '<th scope="col">Last sign-in</th>' in page.text
        # No button on the admin's own row.
        assert f"/dashboard/admin/staff/{admin_id}/" not in page.text
        disabled = await client.post(
            f"/dashboard/admin/staff/{clinician_id}/disable", headers=headers
        )
        assert disabled.status_code == 303, disabled.text
        assert await scalar(live, status) == "disabled"
        refused = await client.get(
            "/dashboard/admin", headers={"Authorization": f"Bearer {clinician}"}
        )
        assert refused.status_code == 401
        page = await client.get("/dashboard/admin", headers=headers)
        assert f'action="/dashboard/admin/staff/{clinician_id}/enable"' in page.text
        enabled = await client.post(
            f"/dashboard/admin/staff/{clinician_id}/enable", headers=headers
        )
        assert enabled.status_code == 303, enabled.text
        assert await scalar(live, status) == "active"
        # Their own account: refused with the reason on the page, nothing changed.
        own = await client.post(f"/dashboard/admin/staff/{admin_id}/disable", headers=headers)
        assert own.status_code == 409
        assert "your own account" in own.text
    assert await _audited(live, "staff.disable", admin_id) == 1
    assert await _audited(live, "staff.enable", admin_id) == 1


async def _team_members(live: LiveService) -> set[uuid.UUID]:
    async with live.runtime.require_engine().connect() as connection:
        rows = await connection.execute(
            select(MEMBERSHIPS.c.staff_id).where(MEMBERSHIPS.c.clinic_id == live.demo.clinic_id)
        )
        return {row.staff_id for row in rows}


async def test_an_admin_changes_a_role_and_takes_someone_off_a_care_team(
    live: LiveService, browser: Any
) -> None:
    admin_id = await _staff_id(live, "clinic_admin")
    clinician_id = await _staff_id(live, "clinician")
    clinician = live.demo.login(Role.CLINICIAN)
    clinicians_token = await _bearer(live, Role.CLINICIAN, clinician_id)
    role = select(STAFF.c.role).where(STAFF.c.id == clinician_id)
    members = await _team_members(live)
    assert clinician_id in members
    others = sorted(members - {clinician_id, admin_id})
    assert others, "the demo's care team has someone besides the clinician"

    async with opened_page(browser, DESKTOP) as page:
        await log_in(page, live, Role.CLINIC_ADMIN, next_path="/dashboard/admin")
        # No role form on the admin's own row: their own role is changed by another admin.
        assert await page.locator(f"#role-{admin_id}").count() == 0

        # The clinician becomes a researcher: a role that takes no alerts leaves the care team.
        await page.select_option(f"#role-{clinician_id}", "researcher")
        await page.click(f'button[aria-label="Change role of {clinician.name}"]')
        await page.wait_for_url(live.base_url + "/dashboard/admin#staff")
        assert await scalar(live, role) == "researcher"
        assert clinician_id not in await _team_members(live)
        assert await _audited(live, "staff.role_change", admin_id) == 1

        # Someone else taken off the team with the button beside their name.
        leaving = others[0]
        removals = await _audited(live, "care_team.remove_member", admin_id)
        await page.click(f'form[action$="/members/{leaving}/remove"] button')
        await page.wait_for_url(live.base_url + "/dashboard/admin#teams")
        assert leaving not in await _team_members(live)
        assert await page.locator(f'form[action$="/members/{leaving}/remove"]').count() == 0
        assert await _audited(live, "care_team.remove_member", admin_id) == removals + 1
        assert not page.console_errors

    headers = {"Authorization": f"Bearer {await _bearer(live, Role.CLINIC_ADMIN, admin_id)}"}
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as client:
        # The old role's session ended with the change.
        ended = await client.get(
            "/api/v1/patients", headers={"Authorization": f"Bearer {clinicians_token}"}
        )
        assert ended.status_code == 401
        # A role a clinic admin cannot give, and their own role: refused, the reason on the page.
        for who, wanted, status, reason in (
            (clinician_id, "operator", 422, "choose a clinician"),
            (admin_id, "clinician", 409, "your own account"),
        ):
            refused = await client.post(
                f"/dashboard/admin/staff/{who}/role", headers=headers, data={"role": wanted}
            )
            assert refused.status_code == status, refused.text
            assert reason in refused.text
        assert await scalar(live, role) == "researcher"
        assert await scalar(live, select(STAFF.c.role).where(STAFF.c.id == admin_id)) == (
            "clinic_admin"
        )
        # A team that is not the clinic's.
        unknown = await client.post(
            f"/dashboard/admin/care-teams/{uuid.uuid4()}/members/{others[0]}/remove",
            headers=headers,
        )
        assert unknown.status_code == 404
    assert await _audited(live, "staff.role_change", admin_id) == 1
