"""Every route, every role, and own patient / another patient / another clinic's patient.

Generated from the app's route table, so a new route is covered the moment it is registered, and a
route with neither an access rule nor ``opt={"public": True}`` fails here. The expected outcome is
DESIGN §8 applied to the route's declared rule: a caller whose token audience the route does not
accept gets 401; a role outside the rule, a patient other than oneself, or a patient of another
clinic gets 403 with an audit row; everyone else gets past access control (any other status: the
empty or placeholder body may still be refused by validation, which is not this test's business).

Some cases end a caller's session (logout, "log out everywhere", erasure of ``patient_a``), and an
ended session's access tokens are refused from the next request (`test_session_end`): before each
case, a caller whose session has ended gets a new one, started in process as a login would.
"""

import base64
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from backend.identity.access import PATIENT_PATH_PARAMETER, Scope, is_public, rule_of
from backend.identity.middleware import is_framework_route
from backend.identity.repositories import session_live
from backend.identity.roles import Role
from backend.identity.sessions import start_session
from backend.identity.tokens import audience_for
from tests.identity.conftest import MovableClock, World, runtime_of

_PARAMETER = re.compile(r"\{(\w+)(?::(\w+))?\}")


@dataclass
class Caller:
    name: str
    role: Role
    clinic_id: uuid.UUID | None
    subject_id: uuid.UUID
    headers: dict[str, str]
    device_id: uuid.UUID | None = None


def _session_of(headers: dict[str, str]) -> uuid.UUID:
    """The refresh-token family a token names (its ``sid`` claim; this test's own token)."""
    payload = headers["Authorization"].removeprefix("Bearer ").split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return uuid.UUID(claims["sid"])


async def _keep_signed_in(client: AsyncTestClient[Litestar], caller: Caller) -> None:
    """A new session for a caller whose session an earlier case ended."""
    runtime = runtime_of(client)
    async with runtime.require_sessionmaker()() as session:
        if await session_live(session, _session_of(caller.headers)):
            return
        tokens = await start_session(
            session,
            runtime,
            role=caller.role,
            subject_id=caller.subject_id,
            clinic_id=caller.clinic_id,
            device_id=caller.device_id,
        )
        await session.commit()
    caller.headers = {"Authorization": f"Bearer {tokens.access_token}"}


def _routes(app: Litestar) -> list[tuple[str, str, HTTPRouteHandler]]:
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                if method in {"HEAD", "OPTIONS"}:
                    continue
                found.append((method, route.path, handler))
    # Erasure last, so the patients it erases are not missing from the other routes' cases.
    return sorted(found, key=lambda item: item[0] == "DELETE")


def _path(template: str, patient_id: uuid.UUID) -> str:
    def fill(match: re.Match[str]) -> str:
        name, kind = match.group(1), match.group(2)
        if name == PATIENT_PATH_PARAMETER:
            return str(patient_id)
        if kind == "uuid":
            return str(uuid.uuid4())
        if kind == "int":
            return "1"
        return "placeholder"

    return _PARAMETER.sub(fill, template)


def _callers(world: World) -> list[Caller]:
    callers = [
        Caller(name, a.role, a.clinic_id, a.id, a.headers) for name, a in world.staff.items()
    ]
    patient = world.patients["patient_a"]
    callers.append(
        Caller(
            "patient_a",
            Role.PATIENT,
            patient.clinic_id,
            patient.id,
            patient.headers,
            patient.device_id,
        )
    )
    return callers


def _expected(
    handler: HTTPRouteHandler, caller: Caller, target: str, world: World
) -> tuple[set[int] | None, bool]:
    """(statuses that mean "refused", whether an audit row is due); None means "let through"."""
    rule = rule_of(handler.opt)
    assert rule is not None
    if audience_for(caller.role) not in rule.audiences:
        return {401}, True
    if caller.role not in rule.roles:
        return {403}, True
    if rule.scope is Scope.PATIENT:
        target_patient = world.patients[target]
        if caller.role is Role.PATIENT:
            allowed = target_patient.id == caller.subject_id
        else:
            allowed = target_patient.clinic_id == caller.clinic_id
        if not allowed:
            return {403}, True
    return None, False


async def _denied_audit_rows(client: AsyncTestClient[Litestar]) -> int:
    runtime = runtime_of(client)
    async with runtime.require_engine().connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM audit_events WHERE outcome = 'denied'")
        )
    return int(count or 0)


async def test_every_route_has_an_access_rule(api: AsyncTestClient[Litestar]) -> None:
    missing = [
        f"{method} {path}"
        for method, path, handler in _routes(api.app)
        if not is_framework_route(handler)
        and not is_public(handler.opt)
        and rule_of(handler.opt) is None
    ]
    assert missing == [], f"routes without an access rule: {missing}"


async def test_authorisation_matrix(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    failures: list[str] = []
    checked = 0
    routes = [
        (method, path, handler)
        for method, path, handler in _routes(api.app)
        if not is_framework_route(handler) and not is_public(handler.opt)
    ]
    assert len(routes) >= 15
    callers = _callers(world)
    for method, path, handler in routes:
        assert rule_of(handler.opt) is not None, f"{method} {path} has no access rule"
        targets = (
            ["patient_a", "patient_a2", "patient_b"]
            if "{" + PATIENT_PATH_PARAMETER in path
            else ["patient_a"]
        )
        for caller in callers:
            for target in targets:
                await _keep_signed_in(api, caller)
                refused, audited = _expected(handler, caller, target, world)
                url = _path(path, world.patients[target].id)
                before = await _denied_audit_rows(api) if audited else 0
                body: Any = {} if method in {"POST", "PUT", "PATCH"} else None
                response = await api.request(method, url, headers=caller.headers, json=body)
                checked += 1
                case = f"{method} {path} as {caller.name} on {target}: {response.status_code}"
                if refused is not None:
                    if response.status_code not in refused:
                        failures.append(f"{case}, expected {sorted(refused)}")
                    elif response.headers["content-type"] != "application/problem+json":
                        failures.append(f"{case}, not a problem document")
                    elif await _denied_audit_rows(api) != before + 1:
                        failures.append(f"{case}, no audit row for the refusal")
                elif response.status_code in {401, 403}:
                    failures.append(f"{case}, expected access, got {response.text[:120]}")
    assert failures == [], "\n".join(failures)
    assert checked >= len(routes) * 6
