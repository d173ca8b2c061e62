"""Deploy files checked by the real tools: docker-compose, kubernetes-validate, systemd, caddy.

A missing tool skips its tests with the reason, unless ``INTERLUDE_REQUIRE_DEPLOY_TOOLS=1``
(``.ci/run`` sets it and installs Debian's ``docker-compose`` and ``caddy``), where it fails.
"""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REQUIRE_TOOLS = os.environ.get("INTERLUDE_REQUIRE_DEPLOY_TOOLS") == "1"


def require_tool(name: str, package: str) -> str:
    """The tool's path, or skip (fail when the tools are required)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package {package})"
        if REQUIRE_TOOLS:
            pytest.fail(f"{reason}; INTERLUDE_REQUIRE_DEPLOY_TOOLS=1")
        pytest.skip(reason)
    return path
