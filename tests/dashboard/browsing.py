"""What the browser tests do again and again: log in, act as a patient's phone through the JSON
API, read the database, open a page with its console errors collected."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import pyotp
from sqlalchemy import select

from backend.domain.alerts.store import ALERTS
from backend.domain.demo.cohort import phq9_answers
from backend.identity import sessions
from backend.identity.roles import Role
from tests.dashboard.conftest import LiveService

DESKTOP: Final = {"width": 1280, "height": 900}
PHONE: Final = {"width": 390, "height": 844}  # a common phone's CSS viewport (iPhone 12-15)


async def patient_token(live: LiveService, patient_id: uuid.UUID) -> str:
    """A patient-app access token issued by the identity service (as device enrolment does)."""
    runtime = live.runtime
    async with runtime.require_sessionmaker()() as session:
        pair = await sessions.start_session(
            session,
            runtime,
            role=Role.PATIENT,
            subject_id=patient_id,
            clinic_id=live.demo.clinic_id,
        )
        await session.commit()
    return pair.access_token


async def submit_positive_phq9(live: LiveService, patient_id: uuid.UUID) -> None:
    """A PHQ-9 with the self-harm item answered, sent as the patient's phone sends it."""
    token = await patient_token(live, patient_id)
    body = {
        "instrumentId": "phq9",
        "instrumentVersion": "1.0.0",
        "answers": [{"linkId": a.link_id, "value": a.value} for a in phq9_answers(19, item9=2)],
    }
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as client:
        response = await client.post(
            "/api/v1/responses", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text


async def scalar(live: LiveService, statement: Any) -> Any:
    async with live.runtime.require_engine().connect() as connection:
        return await connection.scalar(statement)


async def urgent_alert_of(live: LiveService, patient_id: uuid.UUID) -> uuid.UUID:
    alert_id = await scalar(
        live,
        select(ALERTS.c.id).where(
            ALERTS.c.patient_id == patient_id,
            ALERTS.c.kind == "SUICIDALITY",
            ALERTS.c.severity == "urgent",
        ),
    )
    assert isinstance(alert_id, uuid.UUID)
    return alert_id


async def log_in(page: Any, live: LiveService, role: Role, *, next_path: str) -> None:
    login = live.demo.login(role)
    response = await page.goto(live.base_url + next_path)
    assert response is not None
    assert "/dashboard/login" in page.url, "an unauthenticated page must redirect to the login"
    await page.fill("#email", login.email)
    await page.fill("#password", login.password)
    await page.fill("#totp_code", pyotp.TOTP(login.totp_secret).now())
    await page.click("button[type=submit]")
    await page.wait_for_url(live.base_url + next_path)


@contextlib.asynccontextmanager
async def opened_page(browser: Any, viewport: dict[str, int]) -> AsyncIterator[Any]:
    """A page in a fresh browser context; ``page.console_errors`` collects console errors (a CSP
    violation is one)."""
    context = await browser.new_context(viewport=viewport)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.console_errors = errors
    try:
        yield opened
    finally:
        await context.close()
