"""A held session's observations entered on the patient page, in headless Chromium (both
databases).

The form is drawn from what is stored, so a save adds to it instead of wiping it: the new blood
pressure reading, the CADSS-6 rating and the side effect are stored encrypted beside the readings
that were there, through the API's service and with its audit row. A pressure the service
refuses (systolic not above diastolic) is refused beside the form and nothing changes; a page
drawn before a colleague's save is refused (412) instead of replacing their entry.
"""

import uuid
from datetime import timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from backend.audit.service import AUDIT_EVENTS
from backend.domain.sessions import service as sessions_service
from backend.domain.sessions.schemas import SIDE_EFFECT_CODES, SessionView
from backend.identity.roles import Role
from tests.dashboard.browsing import DESKTOP, log_in, opened_page, scalar
from tests.dashboard.conftest import LiveService
from tests.dashboard.test_patient_sessions import PATIENTS, SESSIONS

LOCAL: Final = "%Y-%m-%dT%H:%M"


async def _audited(live: LiveService) -> int:
    count = (
        select(func.count())
        .select_from(AUDIT_EVENTS)
        .where(AUDIT_EVENTS.c.action == "session.observations")
    )
    return int(await scalar(live, count))


async def _stored(live: LiveService, patient_id: uuid.UUID, session_id: uuid.UUID) -> SessionView:
    """The session as the API shows it (observations decrypted with the patient's key)."""
    async with live.runtime.require_sessionmaker()() as session:
        row = await sessions_service.get_session(session, patient_id, session_id)
        (view,) = await sessions_service.session_views(session, live.runtime.keyring, [row])
    return view


async def test_a_clinician_adds_observations_to_a_held_session(
    live: LiveService, browser: Any
) -> None:
    held = await scalar(
        live,
        select(SESSIONS.c.id)
        .where(
            SESSIONS.c.status == "completed",
            SESSIONS.c.patient_id.in_(live.demo.patient_ids),
        )
        .order_by(SESSIONS.c.ended_at.desc()),
    )
    assert isinstance(held, uuid.UUID), "the demo clinic has held sessions"
    patient_id = await scalar(live, select(SESSIONS.c.patient_id).where(SESSIONS.c.id == held))
    zone = ZoneInfo(
        await scalar(live, select(PATIENTS.c.time_zone).where(PATIENTS.c.id == patient_id))
    )
    before = await _stored(live, patient_id, held)
    assert before.observations is not None
    assert before.ended_at is not None
    # A side effect not yet recorded: its onset starts at the session's end.
    asked = {e.code for e in before.observations.side_effects}
    effect = next(code for code in SIDE_EFFECT_CODES if code not in asked)
    readings = len(before.observations.blood_pressure)
    panel = f"#observations-{held}"
    path = f"/dashboard/patients/{patient_id}"
    reading_at = (before.ended_at + timedelta(minutes=10)).replace(second=0, microsecond=0)

    async with (
        opened_page(browser, DESKTOP) as page,
        opened_page(browser, DESKTOP) as colleague,
    ):
        await log_in(page, live, Role.CLINICIAN, next_path=path)
        await page.click(f"{panel} summary")
        # The form shows what is stored: the readings, then empty rows.
        assert await page.input_value(f"#bp-sys-{held}-1") == str(
            before.observations.blood_pressure[0].systolic
        )
        blank = readings + 1
        assert await page.input_value(f"#bp-sys-{held}-{blank}") == ""

        # Systolic not above diastolic: refused beside the form, nothing stored.
        await page.fill(f"#bp-at-{held}-{blank}", reading_at.astimezone(zone).strftime(LOCAL))
        await page.fill(f"#bp-sys-{held}-{blank}", "90")
        await page.fill(f"#bp-dia-{held}-{blank}", "95")
        async with page.expect_response(lambda r: r.url.endswith("/observations")) as info:
            await page.click(f"{panel} >> text=Save observations")
        assert (await info.value).status == 422
        reason = await page.locator(f"#outcome-observations-{held}").inner_text()
        assert "systolic pressure must be above the diastolic" in reason
        assert await page.locator(panel).get_attribute("open") is not None
        assert (await _stored(live, patient_id, held)).version == before.version
        assert await _audited(live) == 0

        # The colleague opens the same page before the save below.
        colleague_pair = await page.context.cookies()
        await colleague.context.add_cookies(colleague_pair)
        await colleague.goto(live.base_url + path)

        # The refused page still holds what was typed; corrected, it saves.
        await page.fill(f"#bp-at-{held}-{blank}", reading_at.astimezone(zone).strftime(LOCAL))
        await page.fill(f"#bp-sys-{held}-{blank}", "168")
        await page.fill(f"#bp-dia-{held}-{blank}", "101")
        await page.fill(f"#cadss6-{held}", "7")
        await page.select_option(f"#se-{effect}-{held}", "2")
        await page.click(f"{panel} >> text=Save observations")
        await page.wait_for_url(f"{live.base_url}{path}#observations-{held}")
        after = await _stored(live, patient_id, held)
        assert after.observations is not None
        assert after.observations.blood_pressure[:readings] == (before.observations.blood_pressure)
        added = after.observations.blood_pressure[readings]
        assert (added.at, added.systolic, added.diastolic) == (reading_at, 168, 101)
        assert after.observations.cadss6 == 7
        new = [e for e in after.observations.side_effects if e.code == effect]
        assert [e.severity for e in new] == [2]
        assert new[0].onset_at == before.ended_at.replace(second=0, microsecond=0)
        kept = [e for e in after.observations.side_effects if e.code != effect]
        assert kept == [e for e in before.observations.side_effects if e.code != effect]
        assert after.notes == before.notes
        assert after.discharged_at == before.discharged_at
        assert await _audited(live) == 1

        # The colleague's page was drawn before that save: refused, nothing replaced.
        await colleague.click(f"{panel} summary")
        await colleague.fill(f"#cadss6-{held}", "2")
        async with colleague.expect_response(lambda r: r.url.endswith("/observations")) as info:
            await colleague.click(f"{panel} >> text=Save observations")
        assert (await info.value).status == 412
        assert (
            "current version"
            in await colleague.locator(f"#outcome-observations-{held}").inner_text()
        )
        assert (await _stored(live, patient_id, held)).version == after.version
        # Its page now shows the stored entry.
        assert await colleague.input_value(f"#cadss6-{held}") == "7"
        assert await _audited(live) == 1
