"""The main pages at desktop and phone width in headless Chromium: axe-core finds no serious or
critical WCAG 2.x A/AA violation, and at phone width (390x844) nothing scrolls sideways and every
control is on screen and big enough to tap, with the disclosures (resolve forms, admin forms)
closed and open. Screenshots of every page at both widths are saved as test artefacts."""

import uuid
from pathlib import Path
from typing import Any, Final

from backend.identity.roles import Role
from tests.dashboard.accessibility import (
    axe_violations,
    open_all_details,
    overflowing_elements,
    sideways_overflow_px,
    unusable_controls,
)
from tests.dashboard.browsing import DESKTOP, PHONE, log_in, opened_page, submit_positive_phq9
from tests.dashboard.conftest import LiveService

VIEWPORTS: Final = {"desktop": DESKTOP, "phone": PHONE}


async def _check_page(page: Any, name: str, width: str, artifacts: Path) -> list[str]:
    """Problems found on the page as loaded; empty when it passes."""
    problems: list[str] = []
    await page.screenshot(path=str(artifacts / f"{width}-{name}.png"), full_page=True)
    for state in ("closed", "open"):
        if state == "open":
            await open_all_details(page)
        for violation in await axe_violations(page):
            problems.append(f"{width} {name} ({state}): axe {violation}")
        if width == "phone":
            overflow = await sideways_overflow_px(page)
            if overflow > 0:
                culprits = await overflowing_elements(page)
                problems.append(
                    f"phone {name} ({state}): scrolls sideways by {overflow} px: {culprits}"
                )
            problems.extend(f"phone {name} ({state}): {c}" for c in await unusable_controls(page))
    if width == "phone":
        await page.screenshot(path=str(artifacts / f"phone-{name}-expanded.png"), full_page=True)
    return problems


async def test_main_pages_pass_axe_and_fit_a_phone(
    live: LiveService, browser: Any, artifacts: Path
) -> None:
    patient_id = live.demo.patient_ids[0]
    await submit_positive_phq9(live, patient_id)  # an open urgent alert with its actions
    pages = {
        "inbox": "/dashboard/",
        "patients": "/dashboard/patients",
        "patient": f"/dashboard/patients/{patient_id}",
        "clinic": "/dashboard/clinic",
        "admin": "/dashboard/admin/",
        "authenticator": "/dashboard/totp",
    }
    problems: list[str] = []
    async with opened_page(browser, DESKTOP) as page:
        # One login for both widths (a TOTP code is good once, and both would share its step).
        await page.goto(live.base_url + "/dashboard/login")
        for width, viewport in VIEWPORTS.items():
            await page.set_viewport_size(viewport)
            problems += await _check_page(page, "login", width, artifacts)
        # Clinic admins see every page a clinician sees, and the admin pages.
        await page.set_viewport_size(DESKTOP)
        await log_in(page, live, Role.CLINIC_ADMIN, next_path="/dashboard/")
        for width, viewport in VIEWPORTS.items():
            await page.set_viewport_size(viewport)
            for name, path in pages.items():
                response = await page.goto(live.base_url + path)
                assert response is not None
                assert response.status == 200, (name, response.status)
                problems += await _check_page(page, name, width, artifacts)
            # The error page (a patient of no clinic: 404).
            response = await page.goto(f"{live.base_url}/dashboard/patients/{uuid.uuid4()}")
            assert response is not None
            assert response.status == 404
            problems += await _check_page(page, "not-found", width, artifacts)
            # The enrolment step that shows a QR code and the key.
            await page.goto(live.base_url + "/dashboard/totp")
            await page.click("text=Show my new key")
            await page.locator("img.qr").wait_for()
            problems += await _check_page(page, "authenticator-key", width, artifacts)
        # The only console errors are the two 404 pages' own (no CSP violation, no script error).
        assert page.console_errors == [
            "Failed to load resource: the server responded with a status of 404 (Not Found)"
        ] * len(VIEWPORTS), page.console_errors
    assert problems == [], "\n".join(problems)
