"""Test harness: every database test runs on SQLite *and* PostgreSQL.

PostgreSQL: ``INTERLUDE_TEST_POSTGRES_URL`` (default: the local server's ``test`` database) is only
the entry point; each run creates its own template database migrated once, and every test gets a
fresh clone of it, so runs and tests cannot collide. If PostgreSQL is unreachable those tests skip
with the reason, unless ``INTERLUDE_REQUIRE_POSTGRES=1`` (CI), where they fail, and where a run in
which no PostgreSQL test passed fails too.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.app import create_app
from backend.config import Settings, load_settings
from backend.db import migrate
from backend.db.engine import create_engine
from bench.common import asyncpg_dsn

POSTGRES_URL = os.environ.get(
    "INTERLUDE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("INTERLUDE_REQUIRE_POSTGRES") == "1"

# The service reads INTERLUDE_* variables; a developer's shell must not leak into tests.
for _name in list(os.environ):
    if _name.startswith("INTERLUDE_") and _name not in {
        "INTERLUDE_TEST_POSTGRES_URL",
        "INTERLUDE_REQUIRE_POSTGRES",
        "INTERLUDE_REQUIRE_BROWSER",
        "INTERLUDE_REQUIRE_DEPLOY_TOOLS",
    }:
        del os.environ[_name]


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(POSTGRES_URL), timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _settings_for(database_url: str, data_dir: Path, **extra: str) -> Settings:
    env = {
        "INTERLUDE_DATA_DIR": str(data_dir),
        "INTERLUDE_DATABASE_URL": database_url,
        "INTERLUDE_TIMER_INTERVAL_SECONDS": "0.2",
        "INTERLUDE_LOG_LEVEL": "WARNING",
    }
    env.update({f"INTERLUDE_{k.upper()}": v for k, v in extra.items()})
    return load_settings(env)


@pytest.fixture(scope="session")
def postgres_available() -> None:
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        reason = f"PostgreSQL unreachable at {make_url(POSTGRES_URL).host}: {error!r}"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (INTERLUDE_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_template(
    postgres_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database migrated to head once per run; tests clone it."""
    name = f"interlude_tpl_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(_settings_for(url, tmp_path_factory.mktemp("tpl")))
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _new_postgres_database(template: str | None) -> str:
    name = f"interlude_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    asyncio.run(_admin(f'CREATE DATABASE "{name}"{clause}'))
    return name


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, on each dialect (used by migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    request.getfixturevalue("postgres_available")
    name = _new_postgres_database(None)
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated to head, fresh for this test, on each dialect."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'interlude.sqlite3'}"
        migrate.upgrade(_settings_for(url, tmp_path / "var"))
        yield url
        return
    yield request.getfixturevalue("postgres_database_url")


@pytest.fixture
def postgres_database_url(postgres_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head (for tests that need PostgreSQL itself)."""
    name = _new_postgres_database(postgres_template)
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Any test that uses a database runs once per dialect; the PostgreSQL leg is marked.
    for fixture in ("database_url", "empty_database_url"):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(
                fixture,
                ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
                indirect=True,
            )


@pytest.fixture
def make_settings(tmp_path: Path) -> "SettingsFactory":
    return SettingsFactory(tmp_path / "var")


class SettingsFactory:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def __call__(self, database_url: str, **extra: str) -> Settings:
        return _settings_for(database_url, self.data_dir, **extra)

    def env(self, database_url: str, **extra: str) -> Mapping[str, str]:
        env = {
            "INTERLUDE_DATA_DIR": str(self.data_dir),
            "INTERLUDE_DATABASE_URL": database_url,
        }
        env.update({f"INTERLUDE_{k.upper()}": v for k, v in extra.items()})
        return env


@pytest.fixture
def settings(database_url: str, make_settings: SettingsFactory) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine of the test's own event loop on the test's database."""
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


# --- CI guard: with INTERLUDE_REQUIRE_POSTGRES=1 a run where no PostgreSQL test passed fails. ---
_postgres_passed = 0


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _postgres_passed
    if report.when == "call" and report.passed and "postgres" in report.keywords:
        _postgres_passed += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_POSTGRES and exitstatus == 0 and _postgres_passed == 0:
        print("\nINTERLUDE_REQUIRE_POSTGRES=1 but no PostgreSQL test passed")  # noqa: T201
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"PostgreSQL tests passed: {_postgres_passed}")
