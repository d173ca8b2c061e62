"""The dashboard shows times in the clinic's own zone, named, in headless Chromium.

An admin sets the demo clinic's zone on the admin page (a name the tz database does not know is
refused beside the form and nothing changes); from then on every time on the inbox (and its
polled rows), the clinic page, a patient's page and the admin page is the stored instant in New
York time with its abbreviation (EST or EDT), as are the score plots' labels, and the clinic
page's "today" is New York's day.
The patient's session form still takes times in the patient's own zone, as its labels say.
"""

import re
import uuid
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from backend.audit.service import AUDIT_EVENTS
from backend.dashboard.queries import CLINICS, STAFF
from backend.identity.roles import Role
from tests.dashboard.browsing import DESKTOP, log_in, opened_page, scalar
from tests.dashboard.conftest import LiveService

NEW_YORK: Final = ZoneInfo("America/New_York")
_SHOWN: Final = re.compile(r"^\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d (EST|EDT)$")


def _new_york_text(stored: str) -> str:
    """What a New York clinician should read for a stored instant, worked out without the page's
    code: the offset decides the abbreviation."""
    local = datetime.fromisoformat(stored).astimezone(NEW_YORK)
    offset = local.utcoffset()
    abbreviation = {timedelta(hours=-5): "EST", timedelta(hours=-4): "EDT"}[offset]  # type: ignore[index]
    return f"{local:%d %b %Y %H:%M} {abbreviation}"


async def _shown_times(page: Any) -> list[tuple[str, str]]:
    """Every ``<time>`` on the page: (the stored instant, the text a person reads)."""
    found: list[tuple[str, str]] = await page.eval_on_selector_all(
        "time", "els => els.map(e => [e.getAttribute('datetime'), e.textContent.trim()])"
    )
    return found


def _check_all_in_new_york(times: list[tuple[str, str]]) -> None:
    for stored, text in times:
        assert _SHOWN.match(text), text
        assert text == _new_york_text(stored)


async def _zone(live: LiveService) -> object:
    return await scalar(
        live, select(CLINICS.c.time_zone).where(CLINICS.c.id == live.demo.clinic_id)
    )


async def test_an_admin_sets_the_clinic_s_zone_and_every_page_shows_its_times(
    live: LiveService, browser: Any
) -> None:
    admin_id = await scalar(
        live, select(STAFF.c.id).where(STAFF.c.role == "clinic_admin").order_by(STAFF.c.created_at)
    )
    assert isinstance(admin_id, uuid.UUID)
    assert await _zone(live) == "UTC"
    async with opened_page(browser, DESKTOP) as admin:
        await log_in(admin, live, Role.CLINIC_ADMIN, next_path="/dashboard/admin")
        # Before a zone is set, times are UTC and say so.
        for _stored, text in await _shown_times(admin):
            assert text.endswith(" UTC"), text

        await admin.fill("#clinic-time-zone", "Mars/Olympus_Mons")
        async with admin.expect_response(lambda r: r.url.endswith("/admin/settings")) as info:
            await admin.click("#settings-form >> text=Save")
        assert (await info.value).status == 422
        assert "unknown time zone" in await admin.locator("#outcome-settings").inner_text()
        assert await _zone(live) == "UTC"

        await admin.fill("#clinic-time-zone", "America/New_York")
        await admin.click("#settings-form >> text=Save")
        await admin.wait_for_url(live.base_url + "/dashboard/admin#staff")
        assert await _zone(live) == "America/New_York"
        assert await admin.input_value("#clinic-time-zone") == "America/New_York"
        audited = await scalar(
            live,
            select(func.count())
            .select_from(AUDIT_EVENTS)
            .where(
                AUDIT_EVENTS.c.action == "clinic.settings",
                AUDIT_EVENTS.c.actor_id == str(admin_id),
            ),
        )
        assert audited == 1
        # The admin's own sign-in time is on the staff table.
        admin_times = await _shown_times(admin)
        assert admin_times
        _check_all_in_new_york(admin_times)

    async with opened_page(browser, DESKTOP) as clinician:
        await log_in(clinician, live, Role.CLINICIAN, next_path="/dashboard/")
        inbox_times = await _shown_times(clinician)
        assert inbox_times, "the demo clinic's inbox has alerts"
        _check_all_in_new_york(inbox_times)
        rows = await clinician.request.get(live.base_url + "/dashboard/inbox/rows")
        assert rows.status == 200
        polled = re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', await rows.text())
        assert polled
        _check_all_in_new_york(polled)

        await clinician.goto(live.base_url + "/dashboard/clinic")
        today = datetime.now(NEW_YORK).date()
        heading = await clinician.locator("#today").inner_text()
        assert heading == f"Sessions on {today:%d %b %Y} (America/New_York)"
        clinic_times = await _shown_times(clinician)
        _check_all_in_new_york(clinic_times)
        session_rows = await clinician.eval_on_selector_all(
            "section[aria-labelledby=today] time", "els => els.map(e => e.getAttribute('datetime'))"
        )
        for stored in session_rows:
            assert datetime.fromisoformat(stored).astimezone(NEW_YORK).date() == today

        patient = live.demo.patient_ids[0]
        await clinician.goto(f"{live.base_url}/dashboard/patients/{patient}")
        patient_times = await _shown_times(clinician)
        assert patient_times
        _check_all_in_new_york(patient_times)
        plot_texts = await clinician.eval_on_selector_all(
            "svg.trajectory title, svg.trajectory desc", "els => els.map(e => e.textContent)"
        )
        assert any(re.search(r"\d\d:\d\d (EST|EDT)", t) for t in plot_texts)
        assert not any("UTC" in t for t in plot_texts)
        assert clinician.console_errors == []
