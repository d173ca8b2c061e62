"""The image's build stage, run here without Docker (no engine on this machine): the wheel is
built by the hash-locked build backend (requirements/build.lock) with no build isolation, so
`docker build` fetches nothing unpinned, and the wheel carries the data files the service reads
at run time (clinical parameters, questionnaires, migrations, dashboard assets)."""

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.deploy.conftest import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
BUILD_LOCK = ROOT / "requirements" / "build.lock"


def _locked(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock.read_text(), re.MULTILINE))


def test_the_build_backend_is_locked_with_hashes() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    locked = _locked(BUILD_LOCK)
    for requirement in requires:
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0]
        assert name in locked, name
    entries = re.split(r"\n(?=[A-Za-z])", BUILD_LOCK.read_text().split("\n", 2)[2].strip())
    assert len(entries) == len(locked)
    assert all("--hash=sha256:" in entry for entry in entries)
    dockerfile = DOCKERFILE.read_text()
    assert "--require-hashes -r requirements/build.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile


def test_the_build_stage_makes_a_complete_wheel_from_locked_packages(tmp_path: Path) -> None:
    venv = tmp_path / "build"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "install", "--require-hashes", "-r", str(BUILD_LOCK)], check=True, timeout=300
    )
    wheels = tmp_path / "wheel"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("interlude-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "backend/domain/alerts/parameters/default.json",
        "backend/db/migrations/env.py",
        "backend/domain/fallback/timings.json",
    ):
        assert expected in names, expected
    assert any(n.startswith("backend/db/migrations/versions/") for n in names)
    assert any(n.startswith("questionnaires/") and n.endswith(".json") for n in names)
    assert any(n.startswith("backend/dashboard/") and not n.endswith(".py") for n in names)
