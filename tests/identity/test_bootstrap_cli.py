"""A fresh install: ``interlude clinic create``, ``interlude staff create``, then a real login."""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from tests.conftest import SettingsFactory

ROOT = Path(__file__).resolve().parents[2]


def _interlude(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        env={**clean, "PYTHONPATH": str(ROOT), "INTERLUDE_LOG_LEVEL": "WARNING", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_operator_bootstraps_a_clinic_and_its_admin_logs_in(
    database_url: str, make_settings: SettingsFactory
) -> None:
    env = dict(make_settings.env(database_url))
    nowhere = _interlude(
        ["clinic", "create", "--name", "Riverside Clinic", "--time-zone", "Nowhere/At_All"], env
    )
    assert nowhere.returncode == 1
    assert "unknown time zone" in nowhere.stderr
    clinic = _interlude(
        ["clinic", "create", "--name", "Riverside Clinic", "--time-zone", "Europe/London"], env
    )
    assert clinic.returncode == 0, clinic.stderr
    clinic_id = re.search(r"clinic ([0-9a-f-]{36})", clinic.stdout)
    assert clinic_id is not None
    again = _interlude(["clinic", "create", "--name", "Riverside Clinic"], env)
    assert again.returncode == 1
    assert "exists" in again.stderr

    created = _interlude(
        [
            "staff", "create", "--clinic", "Riverside Clinic", "--role", "clinic_admin",
            "--email", "boss@riverside.example", "--name", "Ada Boss",
        ],
        env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    password = re.search(r"one-time password: (\S+)", created.stdout)
    uri = re.search(r"URI \(scan once\): (\S+)", created.stdout)
    assert password is not None
    assert uri is not None
    secret = parse_qs(urlparse(uri.group(1)).query)["secret"][0]
    assert "boss@riverside.example" not in created.stderr

    operator = _interlude(
        ["staff", "create", "--role", "operator", "--email", "ops@x.example", "--name", "Op"], env
    )
    assert operator.returncode == 0, operator.stderr
    assert "URI" in operator.stdout

    app = create_app(make_settings(database_url))
    async with AsyncTestClient(app=app) as client:
        login = await client.post(
            "/api/v1/auth/staff/login",
            json={
                "email": "boss@riverside.example",
                "password": password.group(1),
                "totp_code": pyotp.TOTP(secret).now(),
            },
        )
        assert login.status_code == 200, login.text
        token = login.json()["tokens"]["access_token"]
        clinic_view = await client.get(
            "/api/v1/clinic", headers={"Authorization": f"Bearer {token}"}
        )
        assert clinic_view.status_code == 200, clinic_view.text
        assert clinic_view.json()["id"] == clinic_id.group(1)
        assert clinic_view.json()["time_zone"] == "Europe/London"


async def test_two_instances_share_one_lockout(
    database_url: str, make_settings: SettingsFactory
) -> None:
    """Failures alternate between two app instances on one database; the sixth attempt, with
    the right password, is refused by either. (PostgreSQL only: SQLite serves one instance.)"""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serves one instance; the service refuses a second")
    env = dict(make_settings.env(database_url))
    created = _interlude(
        [
            "clinic", "create", "--name", "Shared Clinic",
        ],
        env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    staff = _interlude(
        [
            "staff", "create", "--clinic", "Shared Clinic", "--role", "clinician",
            "--email", "doc@shared.example", "--name", "Doc",
        ],
        env,
    )  # fmt: skip
    assert staff.returncode == 0, staff.stderr
    password = re.search(r"one-time password: (\S+)", staff.stdout)
    assert password is not None
    first: Litestar = create_app(make_settings(database_url, instance_id="one"))
    second: Litestar = create_app(make_settings(database_url, instance_id="two"))
    async with AsyncTestClient(app=first) as one, AsyncTestClient(app=second) as two:
        assert one.app.state.runtime is not two.app.state.runtime
        wrong = {"email": "doc@shared.example", "password": "definitely wrong"}
        for client in (one, two, one, two, one):
            response = await client.post("/api/v1/auth/staff/login", json=wrong)
            assert response.status_code == 401, response.text
        right = {"email": "doc@shared.example", "password": password.group(1)}
        for client in (two, one):
            locked = await client.post("/api/v1/auth/staff/login", json=right)
            assert locked.status_code == 429, locked.text
            assert locked.headers["content-type"] == "application/problem+json"
