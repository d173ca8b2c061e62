"""Recording a patient's consents from the patient page, in headless Chromium (both databases).

A clinician withdraws monitoring for a patient who told the clinic: every open check-in is
cancelled at once and the page says monitoring is withdrawn. A second tab drawn before that
change cannot undo it (412, nothing saved, the page then shows the consents in force); from the
current page the clinician records consent again and the check-ins come back. The form without
its version is refused (428), as the API's PUT without If-Match is.
"""

import uuid
from typing import Any, Final, cast

import httpx
from sqlalchemy import Table, func, select

from backend.audit.service import AUDIT_EVENTS
from backend.dashboard.queries import STAFF
from backend.db.models.patient import Patient
from backend.db.models.treatment import CheckIn
from backend.identity import sessions
from backend.identity.roles import Role
from tests.dashboard.browsing import DESKTOP, log_in, opened_page, scalar
from tests.dashboard.conftest import LiveService

PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
CHECK_INS: Final = cast(Table, CheckIn.__table__)  # type: ignore[attr-defined]
OPEN: Final = ("pending", "merged", "claimed", "sent")


async def _open_check_ins(live: LiveService, patient_id: uuid.UUID) -> int:
    statement = (
        select(func.count())
        .select_from(CHECK_INS)
        .where(CHECK_INS.c.patient_id == patient_id, CHECK_INS.c.status.in_(OPEN))
    )
    return int(await scalar(live, statement))


async def _audited(live: LiveService, action: str, patient_id: uuid.UUID) -> int:
    statement = (
        select(func.count())
        .select_from(AUDIT_EVENTS)
        .where(AUDIT_EVENTS.c.action == action, AUDIT_EVENTS.c.resource_id == str(patient_id))
    )
    return int(await scalar(live, statement))


async def _status(live: LiveService, patient_id: uuid.UUID) -> tuple[str, bool, bool]:
    async with live.runtime.require_engine().connect() as connection:
        row = (
            await connection.execute(
                select(
                    PATIENTS.c.status, PATIENTS.c.monitoring_consent, PATIENTS.c.research_consent
                ).where(PATIENTS.c.id == patient_id)
            )
        ).one()
    return row.status, row.monitoring_consent, row.research_consent


async def test_a_clinician_withdraws_and_records_monitoring_consent_again(
    live: LiveService, browser: Any
) -> None:
    patient_id = live.demo.patient_ids[0]
    url = f"{live.base_url}/dashboard/patients/{patient_id}"
    status, monitoring, research = await _status(live, patient_id)
    assert monitoring
    assert status != "withdrawn"
    assert await _open_check_ins(live, patient_id) > 0  # the demo plans this patient's ladder

    async with opened_page(browser, DESKTOP) as page:
        await log_in(page, live, Role.CLINICIAN, next_path=f"/dashboard/patients/{patient_id}")
        assert await page.locator("#monitoring-withdrawn").count() == 0
        # A second tab, drawn before the change below.
        stale = await page.context.new_page()
        stale_errors: list[str] = []
        stale.on("console", lambda m: stale_errors.append(m.text) if m.type == "error" else None)
        await stale.goto(url)

        await page.uncheck("#monitoring-consent-box")
        await page.click("#consent-form >> text=Record consent")
        await page.wait_for_url(url + "#consent")
        assert await page.locator("#monitoring-consent").inner_text() == "withdrawn"
        assert await page.locator("#monitoring-withdrawn").is_visible()
        assert await _status(live, patient_id) == ("withdrawn", False, research)
        assert await _open_check_ins(live, patient_id) == 0
        assert await _audited(live, "patient.consent.monitoring_withdrawn", patient_id) == 1

        # The outdated tab still shows monitoring given; its save is refused, nothing changes.
        await stale.check("#research-consent-box")
        async with stale.expect_response(lambda r: r.request.method == "POST") as answer:
            await stale.click("#consent-form >> text=Record consent")
        assert (await answer.value).status == 412
        outcome = await stale.locator("#outcome-consent").inner_text()
        assert "changed since it was read" in outcome
        assert await _status(live, patient_id) == ("withdrawn", False, research)
        # The refused page shows the consents in force; consent recorded again from it.
        assert not await stale.is_checked("#monitoring-consent-box")
        await stale.check("#monitoring-consent-box")
        await stale.click("#consent-form >> text=Record consent")
        await stale.wait_for_url(url + "#consent")
        assert await stale.locator("#monitoring-consent").inner_text() == "given"
        status, monitoring, _ = await _status(live, patient_id)
        assert monitoring
        assert status in {"active", "invited"}
        assert await _open_check_ins(live, patient_id) > 0
        assert await _audited(live, "patient.consent.monitoring_given", patient_id) == 1
        assert not page.console_errors
        # Chromium reports the refused save's 412 itself; nothing else (a CSP violation) may show.
        assert [e for e in stale_errors if "status of 412" not in e] == []


async def test_the_consent_form_without_its_version_changes_nothing(live: LiveService) -> None:
    patient_id = live.demo.patient_ids[0]
    runtime = live.runtime
    clinician_id = await scalar(
        live, select(STAFF.c.id).where(STAFF.c.role == "clinician").order_by(STAFF.c.created_at)
    )
    async with runtime.require_sessionmaker()() as session:
        pair = await sessions.start_session(
            session,
            runtime,
            role=Role.CLINICIAN,
            subject_id=clinician_id,
            clinic_id=live.demo.clinic_id,
        )
        await session.commit()
    before = await _status(live, patient_id)
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as client:
        refused = await client.post(
            f"/dashboard/patients/{patient_id}/consent",
            headers={"Authorization": f"Bearer {pair.access_token}"},
            data={"research_consent": "on"},
        )
    assert refused.status_code == 428, refused.text
    assert await _status(live, patient_id) == before
    assert await _audited(live, "patient.consent.monitoring_withdrawn", patient_id) == 0
    assert await _open_check_ins(live, patient_id) > 0
