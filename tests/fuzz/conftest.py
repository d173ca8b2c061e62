"""API fuzzing against a real ``interlude serve``; select with ``-m fuzz``."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: schemathesis against the OpenAPI schema (tests/fuzz)")
