"""deploy/systemd: the single-machine unit as systemd itself reads it."""

import re
import subprocess
from pathlib import Path

from tests.deploy.conftest import DEPLOY, ROOT, require_tool

UNIT = DEPLOY / "systemd" / "interlude.service"
INSTALLED = "/opt/interlude/bin/interlude"


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = require_tool("systemd-analyze", "systemd")
    # systemd checks that ExecStart's program exists: point it at this checkout's entry point.
    unit = tmp_path / "interlude.service"
    unit.write_text(unit_text.replace(INSTALLED, str(ROOT / ".venv" / "bin" / "interlude")))
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_unit_verifies_without_warnings(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert INSTALLED in text
    result = _verify(text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_verify_reports_a_misspelled_directive(tmp_path: Path) -> None:
    result = _verify(UNIT.read_text().replace("KillSignal=", "KillSignl="), tmp_path)
    assert "Unknown key 'KillSignl'" in result.stderr


def test_stop_timeout_covers_the_graceful_stop() -> None:
    match = re.search(r"^TimeoutStopSec=(\d+)$", UNIT.read_text(), re.MULTILINE)
    assert match is not None
    # uvicorn drains for up to 20 s, then timers finish their runs for up to 10 s.
    assert int(match.group(1)) > 20 + 10
