"""A live service (uvicorn in this event loop, on 127.0.0.1 and a free port) with the demo clinic
seeded through the real services, and headless Debian Chromium driven by Playwright.

The browser tests skip when ``/usr/bin/chromium`` is missing, unless INTERLUDE_REQUIRE_BROWSER=1
(CI), where they fail. Screenshots go to TEST_ARTIFACTS_DIR (default: the test's tmp dir).
Playwright never downloads a browser here: it launches the system's chromium.
"""

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar import Litestar

from backend.app import create_app
from backend.config import Settings
from backend.domain.demo.seed import DemoClinic, seed_demo_clinic
from backend.state import Runtime

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_BROWSER = os.environ.get("INTERLUDE_REQUIRE_BROWSER") == "1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LiveService:
    base_url: str
    app: Litestar
    demo: DemoClinic

    @property
    def runtime(self) -> Runtime:
        runtime = self.app.state.runtime
        assert isinstance(runtime, Runtime)
        return runtime


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveService]:
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "the service did not start"
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime)
    demo = await seed_demo_clinic(runtime, now=runtime.clock.now(), patient_count=4)
    try:
        yield LiveService(base_url=f"http://127.0.0.1:{port}", app=app, demo=demo)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():  # noqa: ASYNC240 - one stat before the browser starts
        reason = f"{CHROMIUM} is not installed (Debian package chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason}; INTERLUDE_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    configured = os.environ.get("TEST_ARTIFACTS_DIR")
    directory = Path(configured) if configured else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
