"""Fuzz every operation of the OpenAPI schema against a real ``interlude serve`` (schemathesis).

Each operation gets generated requests (valid and invalid by the schema) carrying the token of a
randomly drawn caller: a patient, each staff role, or nobody. Whatever the caller, no request may
produce a 5xx, and every response must match the schema (body against the documented schema for
its status, and a documented content type). Failures are collected rather than shrunk, so a run
stays bounded (FUZZ_EXAMPLES per operation, default 12) and reports every failing request.

Operations that end sessions or destroy data (logout, revoke, password change, DELETE) run last,
so they do not take the other operations' callers away early.
"""

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from bench.common import Process, World, interlude_serve, make_world, phq9_body, service_env

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
ROLES = ("clinician", "clinic_admin", "researcher", "operator")
_LAST = ("logout", "revoke", "password", "erase")

pytestmark = [pytest.mark.fuzz]


@dataclass
class Target:
    server: Process
    world: World
    callers: dict[str, dict[str, str]]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    from bench.common import create_database

    database = create_database("sqlite", tmp_path / "db")
    data_dir = tmp_path / "var"
    server = interlude_serve(database.url, data_dir, log=tmp_path / "serve.log")
    server.start()
    try:
        world = make_world(
            server.base_url, service_env(database.url, data_dir), patients=2, roles=ROLES
        )
        patient = world.patients[0]
        # Some data for the read operations to find.
        for _ in range(2):
            httpx.post(
                server.base_url + "/api/v1/responses",
                json=phq9_body(),
                headers=patient.headers,
                timeout=10,
            )
        callers = {role: login.headers for role, login in world.staff.items()}
        callers["patient"] = patient.headers
        callers["anonymous"] = {}
        yield Target(server, world, callers)
    finally:
        server.terminate()


@dataclass(frozen=True)
class Failure:
    request: str
    caller: str
    status: int | None
    problem: str


def _order(operation: Any) -> tuple[bool, str]:
    label = f"{operation.method} {operation.path}".lower()
    destructive = operation.method.upper() == "DELETE" or any(w in label for w in _LAST)
    return destructive, label


def _fuzz_operation(
    operation: Any, target: Target, failures: list[Failure], statuses: dict[int, int]
) -> None:
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    patient_ids = [p.id for p in target.world.patients]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(),
        caller=st.sampled_from(sorted(target.callers)),
        known_patient=st.sampled_from([None, *patient_ids]),
    )
    def run(case: Any, caller: str, known_patient: str | None) -> None:
        # Half the time aim at a patient that exists, so the handlers behind the access checks
        # are reached too, not only the 404 for a random id.
        if (
            known_patient is not None
            and case.path_parameters
            and "patient_id" in case.path_parameters
        ):
            case.path_parameters["patient_id"] = known_patient
        headers = dict(target.callers[caller])
        try:
            response = case.call(base_url=target.server.base_url, headers=headers, timeout=15)
        except Exception as error:  # a dropped connection is a failure too
            failures.append(Failure(_describe(case), caller, None, repr(error)[:300]))
            return
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=checks)
        except BaseException as error:  # schemathesis raises an exception group of failures
            if isinstance(error, KeyboardInterrupt):
                raise
            failures.append(
                Failure(_describe(case), caller, response.status_code, str(error)[:600])
            )

    run()


def _describe(case: Any) -> str:
    body = case.body if case.body is not None and not isinstance(case.body, bytes) else None
    return (
        f"{case.method} {case.formatted_path} query={case.query!r} "
        f"headers={sorted((case.headers or {}).keys())} body={body!r}"[:500]
    )


def test_no_operation_answers_5xx_or_breaks_its_schema(target: Target) -> None:
    raw = httpx.get(target.server.base_url + "/schema/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),  # type: ignore[union-attr]
        key=_order,
    )
    assert len(operations) >= 10
    failures: list[Failure] = []
    statuses: dict[int, int] = {}
    for operation in operations:
        _fuzz_operation(operation, target, failures, statuses)
    print(  # noqa: T201  (what the run covered)
        f"\nfuzzed {len(operations)} operations, {sum(statuses.values())} requests, "
        f"statuses {dict(sorted(statuses.items()))}, {len(failures)} failures"
    )
    log = target.server.tail(4000)
    assert not failures, (
        "\n\n".join(
            f"{f.request}\n  as {f.caller}: {f.status}\n  {_first_line(f.problem)}"
            for f in failures[:30]
        )
        + f"\n\nserver log tail:\n{log}"
    )
    # The server outlived all of it.
    assert asyncio.run(_ready(target.server.base_url))


def _first_line(problem: str) -> str:
    lines = [line.strip(" |") for line in problem.splitlines() if line.strip(" |+-")]
    return " / ".join(lines[:6])


async def _ready(base_url: str) -> bool:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return (await client.get("/readyz")).status_code == 200
