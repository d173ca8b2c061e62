"""The running app seals what its requests record: the sealer is one of every instance's timers."""

import asyncio

from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.audit.service import AuditVerification, verify_audit_chain
from backend.config import Settings
from backend.db.engine import create_engine
from backend.state import Runtime


async def test_an_audited_request_is_sealed_by_the_app(
    app: Litestar, client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    runtime: Runtime = app.state["runtime"]
    assert "audit-seal" in runtime.timers.health()
    refused = await client.post(
        "/api/v1/auth/staff/login", json={"email": "nobody@example.org", "password": "x" * 12}
    )
    assert refused.status_code == 401  # recorded in the audit log, unsealed

    # The app runs on its own event loop: read the database through an engine of this one.
    engine = create_engine(settings)
    try:
        result: AuditVerification | None = None
        for _ in range(300):  # the test app's timers tick every 0.2 s; a bound, not a speed test
            result = await verify_audit_chain(engine)
            if result.events and not result.pending:
                break
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    assert result is not None
    assert result.ok, result.first_broken
    assert result.events >= 1
    assert result.pending == 0
