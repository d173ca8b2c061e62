"""Planning a treatment session and recording it as held from the patient page, in headless
Chromium (both databases).

The forms go through the API's services: a planned session gets its check-in ladder in the same
transaction, a held one re-times it from the session's end (and the N2O hold rule applies, as in
the API). Times are entered in the patient's time zone. A dose the form cannot take is refused
with the reason beside the form, and nothing is stored.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, select

from backend.audit.service import AUDIT_EVENTS
from backend.db.models.patient import Patient
from backend.db.models.treatment import CheckIn, TreatmentSession
from backend.identity.roles import Role
from tests.dashboard.browsing import DESKTOP, log_in, opened_page, scalar
from tests.dashboard.conftest import LiveService

PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
SESSIONS: Final = cast(Table, TreatmentSession.__table__)  # type: ignore[attr-defined]
CHECK_INS: Final = cast(Table, CheckIn.__table__)  # type: ignore[attr-defined]


async def _sessions(live: LiveService, patient_id: uuid.UUID) -> int:
    count = select(func.count()).select_from(SESSIONS).where(SESSIONS.c.patient_id == patient_id)
    return int(await scalar(live, count))


async def _audited(live: LiveService, action: str) -> int:
    count = select(func.count()).select_from(AUDIT_EVENTS).where(AUDIT_EVENTS.c.action == action)
    return int(await scalar(live, count))


def _local(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


async def test_a_clinician_plans_a_session_and_records_it_as_held(
    live: LiveService, browser: Any
) -> None:
    patient_id = live.demo.patient_ids[0]
    url = f"{live.base_url}/dashboard/patients/{patient_id}"
    zone = ZoneInfo(
        await scalar(live, select(PATIENTS.c.time_zone).where(PATIENTS.c.id == patient_id))
    )
    before = await _sessions(live, patient_id)
    # Three hours ago, to the minute: a session held this morning, not yet recorded.
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)

    async with opened_page(browser, DESKTOP) as page:
        await log_in(page, live, Role.CLINICIAN, next_path=f"/dashboard/patients/{patient_id}")

        # A dose out of range: refused beside the form, nothing stored.
        await page.click("text=Plan a session")
        await page.select_option("#session-modality", "esketamine")
        await page.fill("#session-start", _local(start, zone))
        await page.fill("#session-minutes", "120")
        await page.evaluate("document.getElementById('session-esketamine').removeAttribute('max')")
        await page.fill("#session-esketamine", "500")
        await page.click("#session-form >> text=Plan the session")
        reason = await page.locator("#outcome-sessions").inner_text()
        assert "esketamine_mg" in reason, reason
        assert await _sessions(live, patient_id) == before

        # An N2O session, planned from the form (the refused page keeps it open).
        await page.select_option("#session-modality", "n2o")
        await page.fill("#session-start", _local(start, zone))
        await page.fill("#session-minutes", "60")
        await page.fill("#session-esketamine", "")
        await page.fill("#session-n2o", "50")
        await page.click("#session-form >> text=Plan the session")
        await page.wait_for_url(url + "#sessions")
        assert await _sessions(live, patient_id) == before + 1
        async with live.runtime.require_engine().connect() as connection:
            row = (
                await connection.execute(
                    select(SESSIONS).where(
                        SESSIONS.c.patient_id == patient_id, SESSIONS.c.planned_start_at == start
                    )
                )
            ).one()
            ladder = await connection.scalar(
                select(func.count()).select_from(CHECK_INS).where(CHECK_INS.c.session_id == row.id)
            )
        assert row.status == "planned"
        assert row.modality == "n2o"
        assert row.n2o_concentration_percent == 50
        assert (ladder or 0) > 0  # its check-ins, planned in the same transaction
        assert await _audited(live, "session.create") == 1

        # Its start has passed: the row offers "Record as held", filled in from the plan.
        await page.click(f"#held-{row.id} summary")
        assert await page.input_value(f"#started-{row.id}") == _local(start, zone)
        await page.click(f"#held-{row.id} >> text=Record as held >> nth=1")
        await page.wait_for_url(url + "#sessions")
        async with live.runtime.require_engine().connect() as connection:
            held = (await connection.execute(select(SESSIONS).where(SESSIONS.c.id == row.id))).one()
        assert held.status == "completed"
        assert held.started_at == start
        assert held.ended_at == start + timedelta(minutes=60)
        assert await page.locator(f"#held-{row.id}").count() == 0
        assert await _audited(live, "session.complete") == 1
        # Chromium reports the refused form's 422 itself; nothing else (a CSP violation) may show.
        assert [e for e in page.console_errors if "status of 422" not in e] == []
