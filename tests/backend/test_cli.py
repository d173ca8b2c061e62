"""The ``interlude`` command as an operator meets it: real processes, real ports, real files."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import SettingsFactory

INTERLUDE = [sys.executable, "-m", "backend"]
ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INTERLUDE, *args],
        env={**_base_env(), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Served:
    def __init__(self, base: str, log: Path) -> None:
        self.base = base
        self.log = log

    @property
    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def _serving(env: Mapping[str, str], cwd: Path) -> Iterator[Served]:
    port = _free_port()
    log = cwd / f"serve-{port}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*INTERLUDE, "serve", "--port", str(port)],
            env={**_base_env(), **env, "INTERLUDE_TIMER_INTERVAL_SECONDS": "0.5"},
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve exited early:\n{served.output}")
            try:
                if _get(served.base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"service did not become ready within 30 s:\n{served.output}")
            time.sleep(0.1)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_configuration_error_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    result = _run(["config"], {"INTERLUDE_DATABASE_URL": "mysql://nope"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "interlude: configuration error: INTERLUDE_DATABASE_URL: "
        "driver must be sqlite+aiosqlite or postgresql+asyncpg (async drivers only)"
    ]
    assert "Traceback" not in result.stderr


def test_serve_in_production_without_keys_refuses_in_one_line(tmp_path: Path) -> None:
    result = _run(["serve"], {"INTERLUDE_ENV": "production"}, tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "INTERLUDE_KEK" in result.stderr


def test_serve_with_an_unreadable_key_file_refuses_in_one_line(tmp_path: Path) -> None:
    key_file = tmp_path / "kek.json"
    key_file.write_text("{not json")
    key_file.chmod(0o600)
    result = _run(
        ["serve"],
        {"INTERLUDE_ENV": "production", "INTERLUDE_KEK_FILE": str(key_file)},
        tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("interlude: configuration error: INTERLUDE_KEK_FILE: ")


def test_config_prints_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    result = _run(
        ["config"],
        {"INTERLUDE_DATABASE_URL": "postgresql+asyncpg://app:hunter2@db/interlude"},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["database_kind"] == "postgresql"
    assert "hunter2" not in result.stdout


def test_migrate_up_current_down(
    empty_database_url: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    env = dict(make_settings.env(empty_database_url))
    assert "none (empty database)" in _run(["migrate", "current"], env, tmp_path).stdout
    assert _run(["migrate", "up"], env, tmp_path).returncode == 0
    assert "(at head)" in _run(["migrate", "current"], env, tmp_path).stdout
    assert _run(["migrate", "down", "base"], env, tmp_path).returncode == 0
    assert "none (empty database)" in _run(["migrate", "current"], env, tmp_path).stdout


def test_serve_starts_on_a_fresh_data_dir_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    """The README's run path: SQLite under the data dir, migrations, a dev key, timers."""
    data_dir = tmp_path / "var"
    env = {"INTERLUDE_DATA_DIR": str(data_dir), "INTERLUDE_LOG_FORMAT": "json"}
    with _serving(env, tmp_path) as first:
        status, body = _get(first.base + "/readyz")
        assert status == 200
        assert body["checks"] == {
            "database": "ok",
            "schema": "ok",
            "timers": "ok",
            "keys": "ok",
        }
        assert _get(first.base + "/healthz") == (200, {"status": "ok"})
    first_output = first.output
    assert (data_dir / "interlude.sqlite3").exists()
    key_file = data_dir / "dev-kek.json"
    assert key_file.stat().st_mode & 0o077 == 0
    assert "DEVELOPMENT KEY IN USE" in first_output
    assert "Running upgrade" in first_output
    key_before = key_file.read_bytes()

    with _serving(env, tmp_path) as second:
        assert _get(second.base + "/readyz")[0] == 200
    second_output = second.output
    assert "Running upgrade" not in second_output  # the second start re-runs no migration
    assert key_file.read_bytes() == key_before  # and keeps the same key

    counted = _run(["migrate", "current"], env, tmp_path)
    assert "(at head)" in counted.stdout
    import sqlite3

    with sqlite3.connect(data_dir / "interlude.sqlite3") as db:
        rows = db.execute("SELECT stopped_at FROM service_instances").fetchall()
    assert len(rows) == 2  # both runs' records survived the restart
    assert all(stopped is not None for (stopped,) in rows)  # and both stopped cleanly


def test_a_second_serve_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    env = {"INTERLUDE_DATA_DIR": str(tmp_path / "var")}
    with _serving(env, tmp_path):
        result = _run(["serve", "--port", str(_free_port())], env, tmp_path)
    assert result.returncode == 2
    assert "another Interlude instance" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_in_production_without_service_secrets_refuses_in_one_line(tmp_path: Path) -> None:
    from backend.crypto.kek import generate_key_material

    result = _run(
        ["serve"],
        {"INTERLUDE_ENV": "production", "INTERLUDE_KEK": generate_key_material()},
        tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "INTERLUDE_BLIND_INDEX_KEY" in lines[0] or "INTERLUDE_TOKEN_SIGNING_KEY" in lines[0]


def test_serve_with_a_broken_notifications_config_refuses_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "notifications.json"
    config.write_text('{"webhook": {"endpoints": 5}}')
    result = _run(
        ["serve"],
        {
            "INTERLUDE_DATA_DIR": str(tmp_path / "var"),
            "INTERLUDE_NOTIFICATIONS_CONFIG": str(config),
        },
        tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("interlude: configuration error: INTERLUDE_NOTIFICATIONS_CONFIG: ")
