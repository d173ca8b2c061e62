"""The dashboard in a real browser (headless Debian Chromium via Playwright).

One clinician's shift: an unauthenticated page sends them to the login; they log in with
password and TOTP; a patient's phone submits a PHQ-9 with the self-harm item answered through the
JSON API and the urgent alert appears in the open inbox without a reload; they acknowledge it (the
audit log records who); the patient page shows the trajectory SVG with its session markers,
severity bands and baseline. The strict CSP is on every page, and a form posted from another site
is refused (no cookies cross sites, and no CSRF token either).
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from backend.audit.service import AUDIT_EVENTS
from backend.dashboard.queries import HOLDS, STAFF
from backend.dashboard.session import CONTENT_SECURITY_POLICY
from backend.domain.alerts.store import ALERTS
from backend.identity.roles import Role
from tests.dashboard.browsing import DESKTOP, log_in, opened_page, scalar, submit_positive_phq9
from tests.dashboard.conftest import LiveService, free_port

# The poll runs every POLL_SECONDS (10 s); leave room for two polls on a slow machine.
APPEAR_TIMEOUT_MS = 30_000


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    async with opened_page(browser, DESKTOP) as opened:
        yield opened


async def test_clinician_shift_in_the_browser(
    live: LiveService, page: Any, artifacts: Path
) -> None:
    patient_id = live.demo.patient_ids[0]
    await log_in(page, live, Role.CLINICIAN, next_path="/dashboard/")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["interlude_access"]["httpOnly"] is True
    assert cookies["interlude_access"]["sameSite"] == "Strict"
    assert cookies["interlude_refresh"]["httpOnly"] is True

    # The open inbox learns about a new urgent alert without a reload.
    await page.evaluate("window.__notReloaded = true")
    before = await page.locator("tr.alert-row").count()
    await submit_positive_phq9(live, patient_id)
    alert_id = await scalar(
        live,
        select(ALERTS.c.id).where(
            ALERTS.c.patient_id == patient_id,
            ALERTS.c.kind == "SUICIDALITY",
            ALERTS.c.severity == "urgent",
        ),
    )
    assert alert_id is not None
    row = page.locator(f"#alert-{alert_id}")
    await row.wait_for(timeout=APPEAR_TIMEOUT_MS)
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    assert await page.locator("tr.alert-row").count() > before
    assert "urgent" in (await page.locator("#inbox-news").inner_text())
    await page.screenshot(path=str(artifacts / "inbox.png"), full_page=True)

    # Acknowledge it; the audit log names the clinician.
    await page.click(f"#alert-{alert_id} button.ack")
    await page.wait_for_load_state()
    assert await page.locator(f"#alert-{alert_id} button.ack").count() == 0
    assert await scalar(live, select(ALERTS.c.status).where(ALERTS.c.id == alert_id)) == (
        "acknowledged"
    )
    actor = await scalar(
        live,
        select(AUDIT_EVENTS.c.actor_id).where(
            AUDIT_EVENTS.c.action == "alert.acknowledge",
            AUDIT_EVENTS.c.resource_id == str(alert_id),
        ),
    )
    clinician = await scalar(
        live, select(STAFF.c.id).where(STAFF.c.role == "clinician").order_by(STAFF.c.created_at)
    )
    assert actor == str(clinician)

    # The patient page: the trajectory with sessions, bands, baseline, and the pinned alert.
    response = await page.goto(f"{live.base_url}/dashboard/patients/{patient_id}")
    assert response is not None
    assert response.status == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    plot = page.locator("svg#plot-phq9")
    await plot.wait_for()
    assert await plot.get_attribute("role") == "img"
    assert await plot.locator("g.session").count() >= 1
    assert await plot.locator("g.band").count() == 5
    assert await plot.locator("circle.score").count() >= 2
    assert await plot.locator("g.alert").count() >= 1
    assert await page.locator("figure.plot table").count() >= 1  # the text alternative
    await page.screenshot(path=str(artifacts / "patient.png"), full_page=True)
    assert page.console_errors == [], page.console_errors  # CSP violations are console errors


async def test_cross_site_form_post_is_refused(
    live: LiveService, page: Any, artifacts: Path
) -> None:
    await log_in(page, live, Role.CLINICIAN, next_path="/dashboard/")
    alert_id = await scalar(
        live,
        select(ALERTS.c.id).where(ALERTS.c.status == "open").order_by(ALERTS.c.opened_at),
    )
    target = f"{live.base_url}/dashboard/alerts/{alert_id}/resolve"

    # Same browser, no token: refused by the CSRF check.
    refused = await page.request.post(target, form={"outcome": "other", "note": "forged"})
    assert refused.status == 403

    # A page on another site (localhost is not 127.0.0.1's site) posts the form on load.
    attacker_page = (
        "<!doctype html><form id=f method=post action='" + target + "'>"
        "<input name=outcome value=other><input name=note value=forged></form>"
        "<script>document.getElementById('f').submit()</script>"
    ).encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: "
            + str(len(attacker_page)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + attacker_page
        )
        await writer.drain()
        writer.close()

    port = free_port()
    attacker = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        await page.goto(f"http://localhost:{port}/")
        await page.wait_for_load_state("networkidle")
    finally:
        attacker.close()
    # SameSite=Strict kept the session cookies home, so the post arrived unauthenticated.
    assert "/dashboard/login" in page.url
    assert await scalar(live, select(ALERTS.c.status).where(ALERTS.c.id == alert_id)) == "open"


async def test_unauthenticated_pages_redirect_and_carry_the_csp(live: LiveService) -> None:
    html = {"Accept": "text/html"}
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10, headers=html) as client:
        page = await client.get(f"/dashboard/patients/{live.demo.patient_ids[0]}")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/dashboard/login?next=/dashboard/patients/")
        login = await client.get("/dashboard/login")
        assert login.status_code == 200
        assert login.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert login.headers["x-frame-options"] == "DENY"
        assert "<script>" not in login.text  # no inline script anywhere
        # A client that does not ask for HTML gets the API's problem document, not a redirect.
        plain = await client.get("/dashboard/", headers={"Accept": "application/json"})
        assert plain.status_code == 401
        assert plain.headers["content-type"] == "application/problem+json"
        # The JSON API is not behind CSRF: its login answers on the credentials alone.
        api = await client.post("/api/v1/auth/staff/login", json={"email": "x@example.org"})
        assert api.status_code in {400, 401, 422}
        assert api.headers["content-type"] == "application/problem+json"


async def test_patient_page_clears_an_n2o_hold_and_lists_lab_reminders(
    live: LiveService, page: Any, artifacts: Path
) -> None:
    held = await scalar(
        live,
        select(HOLDS.c.patient_id).where(
            HOLDS.c.clinic_id == live.demo.clinic_id, HOLDS.c.cleared_at.is_(None)
        ),
    )
    if held is None:  # the demo always holds someone; say so if that changes
        pytest.fail("the demo clinic has no patient on an N2O hold")
    labs_due = await scalar(
        live,
        select(func.count())
        .select_from(ALERTS)
        .where(
            ALERTS.c.patient_id == held,
            ALERTS.c.kind == "HAEMATOLOGICAL_MONITORING_DUE",
            ALERTS.c.status != "resolved",
        ),
    )
    assert labs_due > 0, "an N2O hold comes with a blood-test reminder in the demo"
    await log_in(page, live, Role.CLINICIAN, next_path=f"/dashboard/patients/{held}")
    assert await page.locator("h3#labs").count() == 1
    assert await page.locator("ul.labs li").count() == labs_due
    await page.click("#n2o-hold button")
    await page.wait_for_url(f"{live.base_url}/dashboard/patients/{held}")
    assert await page.locator("#n2o-hold").count() == 0
    cleared = await scalar(
        live,
        select(HOLDS.c.cleared_at).where(HOLDS.c.patient_id == held).order_by(HOLDS.c.created_at),
    )
    assert cleared is not None
    audited = await scalar(
        live, select(AUDIT_EVENTS.c.id).where(AUDIT_EVENTS.c.action == "n2o_hold.clear")
    )
    assert audited is not None
    await page.screenshot(path=str(artifacts / "patient-hold-cleared.png"), full_page=True)
    assert page.console_errors == [], page.console_errors
