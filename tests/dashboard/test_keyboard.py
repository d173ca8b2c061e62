"""The dashboard with the keyboard alone (Tab, Shift+Tab, Enter, typing), in headless Chromium.

A clinician logs in, skips the navigation with the skip link, tabs through the inbox and resolves
an alert there with a note, opens a patient from the inbox, and acknowledges that patient's alert
on the patient page. Every element that takes focus on the way shows a visible focus ring.
"""

from pathlib import Path
from typing import Any, Final

import pyotp
import pytest
from sqlalchemy import select

from backend.audit.service import AUDIT_EVENTS
from backend.domain.alerts.store import ALERTS
from backend.identity.roles import Role
from tests.dashboard.browsing import (
    DESKTOP,
    opened_page,
    scalar,
    submit_positive_phq9,
    urgent_alert_of,
)
from tests.dashboard.conftest import LiveService

# More Tab presses than any page here needs to reach its last control.
MAX_TABS: Final = 150

_FOCUSED_JS: Final = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id,
    text: (el.textContent || "").trim().slice(0, 40),
    outline: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth) || 0,
    onScreen: box.width > 0 && box.height > 0 && box.left >= 0 && box.top >= 0 &&
      box.right <= window.innerWidth,
  };
}"""


async def focused(page: Any) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate(_FOCUSED_JS)
    return found


def _visible_focus(state: dict[str, Any]) -> bool:
    return bool(state["outline"] != "none" and state["outlineWidth"] >= 2)


async def tab_to(page: Any, selector: str) -> int:
    """Press Tab until ``selector`` has focus, checking each stop's focus ring; the presses."""
    for presses in range(1, MAX_TABS + 1):
        await page.keyboard.press("Tab")
        state = await focused(page)
        assert state["tag"] != "body", f"focus fell out of the page before {selector}"
        assert _visible_focus(state), f"no visible focus on {state}"
        if await page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return presses
    pytest.fail(f"{selector} was not reached with {MAX_TABS} Tab presses")


async def test_keyboard_only_login_inbox_patient_and_acknowledge(
    live: LiveService, browser: Any, artifacts: Path
) -> None:
    patient_id = live.demo.patient_ids[0]
    await submit_positive_phq9(live, patient_id)
    alert_id = await urgent_alert_of(live, patient_id)
    login = live.demo.login(Role.CLINICIAN)

    async with opened_page(browser, DESKTOP) as page:
        await page.goto(live.base_url + "/dashboard/")
        assert "/dashboard/login" in page.url

        # The first Tab lands on the skip link, which shows itself when focused.
        await page.keyboard.press("Tab")
        state = await focused(page)
        assert state["text"] == "Skip to content", state
        assert state["onScreen"], state
        assert _visible_focus(state)

        await tab_to(page, "#email")
        await page.keyboard.type(login.email)
        await tab_to(page, "#password")
        await page.keyboard.type(login.password)
        await tab_to(page, "#totp_code")
        await page.keyboard.type(pyotp.TOTP(login.totp_secret).now())
        await page.keyboard.press("Enter")
        await page.wait_for_url(live.base_url + "/dashboard/")

        # Skip link: Enter moves focus past the navigation into the page's content.
        await page.keyboard.press("Tab")
        assert (await focused(page))["text"] == "Skip to content"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main"
        await page.keyboard.press("Tab")
        first = await page.evaluate("document.activeElement.closest('header') === null")
        assert first, "after the skip link, Tab must go into the content, not the navigation"

        # Resolve the oldest other open alert from the inbox, with a note.
        other_id = await scalar(
            live,
            select(ALERTS.c.id)
            .where(ALERTS.c.status == "open", ALERTS.c.id != alert_id)
            .order_by(ALERTS.c.opened_at),
        )
        await tab_to(page, f"#alert-{other_id} details.resolve summary")
        await page.keyboard.press("Enter")  # opens the disclosure
        await tab_to(page, f"#outcome-{other_id}")
        await page.keyboard.type("Patient contacted")  # typing selects the matching option
        assert await page.input_value(f"#outcome-{other_id}") == "patient_contacted"
        await tab_to(page, f"#note-{other_id}")
        await page.keyboard.type("Phoned the patient; plan agreed.")
        await tab_to(page, f"#alert-{other_id} button.resolve-submit")
        await page.keyboard.press("Enter")
        await page.wait_for_load_state()
        await page.locator(f"#alert-{other_id}").wait_for(state="detached")
        assert await scalar(live, select(ALERTS.c.status).where(ALERTS.c.id == other_id)) == (
            "resolved"
        )
        await page.screenshot(path=str(artifacts / "keyboard-inbox.png"), full_page=True)

        # Open the patient of the new urgent alert from its inbox row.
        await tab_to(page, f"#alert-{alert_id} a[href='/dashboard/patients/{patient_id}']")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{live.base_url}/dashboard/patients/{patient_id}")

        # Acknowledge it on the patient page.
        await tab_to(page, f"#alert-{alert_id} button.ack")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{live.base_url}/dashboard/patients/{patient_id}")
        await page.locator(f"#alert-{alert_id}").wait_for()
        assert await page.locator(f"#alert-{alert_id} button.ack").count() == 0
        await page.screenshot(path=str(artifacts / "keyboard-patient.png"), full_page=True)
        assert page.console_errors == [], page.console_errors

    assert await scalar(live, select(ALERTS.c.status).where(ALERTS.c.id == alert_id)) == (
        "acknowledged"
    )
    for action, resource in (("alert.acknowledge", alert_id), ("alert.resolve", other_id)):
        recorded = await scalar(
            live,
            select(AUDIT_EVENTS.c.id).where(
                AUDIT_EVENTS.c.action == action, AUDIT_EVENTS.c.resource_id == str(resource)
            ),
        )
        assert recorded is not None, action
