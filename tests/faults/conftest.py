"""Fault tests: real ``interlude serve`` processes on loopback; select with ``-m faults``."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: real service processes killed, stopped or cut off (tests/faults)"
    )
