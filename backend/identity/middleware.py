"""Authentication and authorisation for every route, before its handler runs.

Litestar builds the middleware stack per route, so the matched handler (and its ``opt``) and the
parsed path parameters are already in the ASGI scope here. The order of checks:

1. ``opt={"public": True}`` passes untouched (probes, login, refresh, code redemption).
2. A route without an ``AccessRule`` is refused for everyone: forgetting a rule fails closed.
3. The bearer token must verify for one of the audiences the rule's roles imply (401), and its
   session (refresh-token family) must still be live (401): logging out, "log out everywhere",
   erasure or a replayed refresh token end the session's access tokens at the next request, not
   up to 15 minutes later. A staff token also holds only while its account is active with the
   role and clinic it names (401), so a disabled account or a changed role takes effect at the
   next request. The submission routes check a patient's session in their own first statement
   (``AccessRule.session_checked_by_handler``; `refuse_ended_session`).
4. ``decide`` checks role, TOTP-enrolment stage and clinic; a PATIENT-scoped route also checks
   that the named patient is the caller or in the caller's clinic (403, 404 for no such patient).

Every refusal of a presented token or of an authenticated caller writes an audit row in its own
short transaction (the request has no session yet). A request with no token at all is refused
without one: that is the normal first request of any client, not an attempt on anyone's data.
"""

import logging
from typing import Any, Final, NoReturn
from uuid import UUID

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.handlers import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from backend.identity import repositories
from backend.identity.access import (
    PATIENT_PATH_PARAMETER,
    AccessRule,
    Denial,
    decide,
    decide_patient,
    is_public,
    rule_of,
)
from backend.identity.access import Scope as AccessScope
from backend.identity.audit_trail import audit
from backend.identity.principal import Principal, principal_from_claims
from backend.identity.tokens import InvalidToken, Stage, read_access_token
from backend.lib.errors import Forbidden, NotFound, Unauthorized
from backend.state import Runtime

logger = logging.getLogger("interlude.access")

_NO_TOKEN = "this route needs an access token (Authorization: Bearer …)"  # noqa: S105
_BAD_TOKEN = "the access token is not valid; refresh it or log in again"  # noqa: S105
_FORBIDDEN = "your role or clinic does not give access to this"
SESSION_ENDED: Final = "session_ended"


def is_framework_route(handler: BaseRouteHandler) -> bool:
    """Routes Litestar adds itself (the OpenAPI documents under ``/schema``)."""
    return handler.fn.__module__.startswith("litestar.")


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class AccessControlMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        handler: BaseRouteHandler = scope["route_handler"]
        if is_public(handler.opt) or is_framework_route(handler):
            await next_app(scope, receive, send)
            return
        rule = rule_of(handler.opt)
        if rule is None:
            logger.error(
                "route without an access rule refused",
                extra={"fields": {"route": scope.get("path_template")}},
            )
            raise Forbidden("this route has no access rule")
        runtime = Litestar.from_scope(scope).state.runtime
        assert isinstance(runtime, Runtime)
        scope["user"] = await authorise(runtime, scope, rule)
        await next_app(scope, receive, send)


async def authorise(runtime: Runtime, scope: Scope, rule: AccessRule) -> Principal:
    token = bearer_token(scope)
    if token is None:
        raise Unauthorized(_NO_TOKEN)
    try:
        claims = read_access_token(
            runtime.secrets.token_signing_key,
            token,
            audiences=rule.audiences,
            now=runtime.clock.now(),
        )
    except InvalidToken as refused:
        await _record_refusal(runtime, scope, f"access.token_{refused.reason}", None, None)
        raise Unauthorized(_BAD_TOKEN) from None
    principal = principal_from_claims(claims)
    if principal.is_patient:
        if not rule.session_checked_by_handler and not await _session_live(runtime, principal):
            await refuse_ended_session(runtime, scope, principal)
    else:
        stale = await _staff_token_outdated(runtime, principal)
        if stale is not None:
            await _record_refusal(runtime, scope, f"access.{stale}", principal, None)
            raise Unauthorized(_BAD_TOKEN)
    denial = decide(rule, principal)
    patient_id: UUID | None = None
    if denial is None and rule.scope is AccessScope.PATIENT:
        patient_id = _patient_parameter(scope)
        clinic_id = await _patient_clinic(runtime, principal, patient_id)
        denial = decide_patient(principal, patient_id, clinic_id)
    if denial is not None:
        await _record_refusal(runtime, scope, f"access.{denial.value}", principal, patient_id)
        if denial is Denial.UNKNOWN_PATIENT:
            raise NotFound("no such patient")
        raise Forbidden(_FORBIDDEN)
    return principal


async def _staff_token_outdated(runtime: Runtime, principal: Principal) -> str | None:
    """Why a staff member's valid token no longer speaks for them (an audit reason), or None.

    A signature proves what the account was when the token was issued; a clinic admin who
    disables an account or changes its role means it to hold from the next request, not up to
    15 minutes later, so the account is read on every staff request (one primary-key read, with
    the session's liveness beside it)."""
    # The TOTP-enrolment token has no refresh token, hence no family to look up.
    family = None if principal.stage is Stage.TOTP_ENROLMENT else principal.session_id
    async with runtime.require_sessionmaker()() as session:
        current = await repositories.staff_access(session, principal.subject_id, family)
    if current is None or current[0] != "active":
        return "account_inactive"
    if current[1] != principal.role.value or current[2] != principal.clinic_id:
        return "role_changed"
    if not current[3]:
        return SESSION_ENDED
    return None


async def _session_live(runtime: Runtime, principal: Principal) -> bool:
    async with runtime.require_sessionmaker()() as session:
        return await repositories.session_live(session, principal.session_id)


async def refuse_ended_session(runtime: Runtime, scope: Scope, principal: Principal) -> NoReturn:
    """Refuse (401, audited) a verified token whose session has ended since it was issued."""
    await _record_refusal(runtime, scope, f"access.{SESSION_ENDED}", principal, None)
    raise Unauthorized(_BAD_TOKEN)


def _patient_parameter(scope: Scope) -> UUID:
    value: Any = scope.get("path_params", {}).get(PATIENT_PATH_PARAMETER)
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound("no such patient") from None


async def _patient_clinic(runtime: Runtime, principal: Principal, patient_id: UUID) -> UUID | None:
    if principal.is_patient:
        return principal.clinic_id
    async with runtime.require_sessionmaker()() as session:
        return await repositories.get_patient_clinic(session, patient_id)


async def _record_refusal(
    runtime: Runtime,
    scope: Scope,
    action: str,
    principal: Principal | None,
    patient_id: UUID | None,
) -> None:
    # The route template, never the raw path: a path can carry whatever a client typed.
    route = f"{scope.get('method')} {scope.get('path_template') or ''}"[:128]
    async with runtime.require_sessionmaker()() as session:
        await audit(
            session,
            runtime,
            action=action,
            resource_type="patient" if patient_id is not None else "route",
            # The route template, never the raw path: a path can carry whatever a client typed.
            resource_id=patient_id
            if patient_id is not None
            else f"{scope.get('method')} {route}"[:128],
            clinic_id=principal.clinic_id if principal is not None else None,
            purpose="security",
            outcome="denied",
            actor=principal,
        )
        await session.commit()
