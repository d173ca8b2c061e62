"""Setting up a second factor (TOTP) in the dashboard, through the identity service's enrolment.

Reached two ways: right after a password-only login of an account that must enrol first (its
enrolment-stage token reaches only these routes), or by a logged-in staff member replacing their
authenticator. Starting is a POST (it stores a new pending secret), so the secret never appears in
a URL, a link or a cached page (dashboard pages are ``no-store``); it is shown once, as a QR code
and as text, and only a code from it makes it the account's factor. Nothing here logs it.
"""

from typing import Any, Final

import msgspec
import segno
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Response, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard.pages import DASHBOARD_ROLES, page
from backend.dashboard.session import (
    DASHBOARD_PATH,
    cleared_enrolment_cookie,
    cookies_are_secure,
    session_cookies,
)
from backend.identity import login, sessions
from backend.identity.access import Scope, access
from backend.identity.errors import RecordedDenial
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.tokens import Stage
from backend.lib.errors import DomainError
from backend.state import Runtime

_ENROLMENT: Final = access(*DASHBOARD_ROLES, scope=Scope.SELF, allow_totp_enrolment=True)


class ConfirmForm(msgspec.Struct, kw_only=True):
    code: str = ""


def qr_data_uri(provisioning_uri: str) -> str:
    """The otpauth URI as an SVG QR code in a data URI (the CSP allows ``img-src data:``)."""
    return str(
        segno.make(provisioning_uri, error="m").svg_data_uri(
            scale=5, border=4, dark="#000", light="#fff"
        )
    )


def grouped(secret: str) -> str:
    """``ABCD EFGH …``: easier to type into an app than 32 characters in one run."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _page(principal: Principal, *, status_code: int = 200, **context: Any) -> Template:
    enrolling = principal.stage is Stage.TOTP_ENROLMENT
    defaults: dict[str, Any] = {
        "enrolling": enrolling,
        "started": False,
        "qr": None,
        "secret": None,
        "error": None,
    }
    defaults.update(context)
    if enrolling:
        # The enrolment-stage token reaches nothing else, so no navigation to offer.
        return Template(
            template_name="totp.html",
            context={"nav": [], **defaults},
            status_code=status_code,
        )
    return page("totp.html", principal, current="totp", status_code=status_code, **defaults)


class DashboardTotpController(Controller):
    path = "/totp"
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/", opt=_ENROLMENT, name="dashboard-totp")
    async def show(self, principal: NamedDependency[Principal]) -> Template:
        return _page(principal)

    @post("/start", opt=_ENROLMENT, status_code=200)
    async def start(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        enrolment = await login.begin_totp_enrolment(db_session, runtime, principal)
        return _page(
            principal,
            started=True,
            qr=qr_data_uri(enrolment.provisioning_uri),
            secret=grouped(enrolment.secret),
        )

    @post("/confirm", opt=_ENROLMENT, status_code=303)
    async def confirm(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[ConfirmForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        code = "".join(data.code.split())
        try:
            pair = await login.confirm_totp_enrolment(db_session, runtime, principal, code)
        except RecordedDenial as denial:
            # Returned, not raised: the failure count and its audit row must be committed.
            # 422, not 401: the caller is authenticated (enrolment or full session); the code
            # they typed is what is wrong, and the page asks for it again.
            return _page(principal, started=True, error=denial.error.detail, status_code=422)
        except DomainError as error:
            return _page(principal, error=error.detail, status_code=error.status_code)
        if principal.stage is Stage.FULL:
            # The session that replaced its factor ends; the new one carries on.
            await sessions.end_session(db_session, runtime, principal)
        secure = cookies_are_secure(runtime, request.url.scheme)
        return Redirect(
            path=DASHBOARD_PATH + "/",
            status_code=HTTP_303_SEE_OTHER,
            cookies=[
                *session_cookies(pair, secure=secure, now=runtime.clock.now()),
                cleared_enrolment_cookie(secure=secure),
            ],
        )
