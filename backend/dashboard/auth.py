"""Logging in and out of the dashboard: the identity service's login, kept in cookies."""

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Response, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard.errors import LOGIN_PATH, safe_next
from backend.dashboard.pages import DASHBOARD_ROLES
from backend.dashboard.session import (
    TOTP_PATH,
    cleared_cookies,
    cookies_are_secure,
    enrolment_cookie,
    session_cookies,
)
from backend.identity import login, sessions
from backend.identity.access import Scope, access
from backend.identity.controllers import client_address
from backend.identity.errors import RecordedDenial, TotpRequired
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal, principal_from_claims
from backend.identity.roles import STAFF_ROLES
from backend.identity.schemas import StaffLogin, StaffLoginResult
from backend.identity.tokens import Audience, read_access_token
from backend.lib.errors import DomainError
from backend.state import Runtime


class LoginForm(msgspec.Struct, kw_only=True):
    email: str = ""
    password: str = ""
    totp_code: str = ""
    next: str = ""


def _login_page(
    *, error: str | None = None, email: str = "", next_path: str = "", status_code: int = 200
) -> Template:
    return Template(
        template_name="login.html",
        context={"error": error, "email": email, "next": safe_next(next_path)},
        status_code=status_code,
    )


def _as_login(form: LoginForm) -> StaffLogin:
    try:
        return msgspec.convert(
            {
                "email": form.email.strip(),
                "password": form.password,
                "totp_code": form.totp_code.strip() or None,
            },
            StaffLogin,
        )
    except msgspec.ValidationError:
        raise _BadForm from None


class _BadForm(Exception):
    pass


async def _to_totp_enrolment(
    db_session: AsyncSession, runtime: Runtime, result: StaffLoginResult, *, secure: bool
) -> Response[Any]:
    """A right password for an account that must enrol a second factor first: the enrolment
    page, carrying the enrolment-stage token (it reaches nothing else)."""
    token = result.enrolment_access_token
    if token is None:
        return _login_page(error="This account cannot log in here.", status_code=403)
    claims = read_access_token(
        runtime.secrets.token_signing_key,
        token,
        audiences=frozenset({Audience.STAFF}),
        now=runtime.clock.now(),
    )
    if principal_from_claims(claims).role not in DASHBOARD_ROLES:
        return _login_page(
            error="The dashboard is for clinicians and clinic administrators.", status_code=403
        )
    max_age = max(0, claims.exp - int(runtime.clock.now().timestamp()))
    return Redirect(
        path=TOTP_PATH,
        status_code=HTTP_303_SEE_OTHER,
        cookies=[enrolment_cookie(token, secure=secure, max_age=max_age)],
    )


class DashboardAuthController(Controller):
    path = "/"
    include_in_schema = False
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/login", opt={"public": True}, name="dashboard-login")
    async def login_form(
        self, next_path: Annotated[str | None, QueryParameter(name="next", required=False)] = None
    ) -> Template:
        return _login_page(next_path=next_path or "")

    @post("/login", opt={"public": True}, status_code=200)
    async def log_in(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[LoginForm],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        wrong = "The email, password or one-time code is not correct."
        try:
            credentials = _as_login(data)
        except _BadForm:
            return _login_page(error=wrong, email=data.email, next_path=data.next, status_code=401)
        try:
            result = await login.log_in(
                db_session, runtime, credentials, source=client_address(request)
            )
        except RecordedDenial as denial:
            # Returning (not raising) lets the request commit the audit row and failure count.
            return _login_page(
                error=denial.error.detail, email=data.email, next_path=data.next, status_code=401
            )
        except TotpRequired:
            return _login_page(
                error="Enter the one-time code from your authenticator app.",
                email=data.email,
                next_path=data.next,
                status_code=401,
            )
        except DomainError as error:
            return _login_page(
                error=error.detail, email=data.email, next_path=data.next, status_code=400
            )
        secure = cookies_are_secure(runtime, request.url.scheme)
        if result.tokens is None:
            return await _to_totp_enrolment(db_session, runtime, result, secure=secure)
        claims = read_access_token(
            runtime.secrets.token_signing_key,
            result.tokens.access_token,
            audiences=frozenset({Audience.STAFF}),
            now=runtime.clock.now(),
        )
        principal = principal_from_claims(claims)
        if principal.role not in DASHBOARD_ROLES:
            # Researchers and operators have no identified patient data to see here.
            await sessions.end_session(db_session, runtime, principal)
            return _login_page(
                error="The dashboard is for clinicians and clinic administrators.",
                status_code=403,
            )
        return Redirect(
            path=safe_next(data.next),
            status_code=HTTP_303_SEE_OTHER,
            cookies=session_cookies(result.tokens, secure=secure, now=runtime.clock.now()),
        )

    @post("/logout", opt=access(*STAFF_ROLES, scope=Scope.SELF), status_code=303)
    async def log_out(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        await sessions.end_session(db_session, runtime, principal)
        return Redirect(
            path=LOGIN_PATH,
            status_code=HTTP_303_SEE_OTHER,
            cookies=cleared_cookies(secure=cookies_are_secure(runtime, request.url.scheme)),
        )
