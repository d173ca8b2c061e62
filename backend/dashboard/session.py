"""The dashboard's browser session: the API's own tokens, carried in cookies.

A staff login in the dashboard starts the same session as the API's login (a refresh-token family,
``backend.identity.sessions``). The access token and the refresh token travel in two cookies that
are HttpOnly (no script can read them), SameSite=Strict (never sent on a request started by another
site) and Secure when the request came over TLS or the service runs in production. Their path is
the dashboard's, so the JSON API never sees them.

``DashboardSessionMiddleware`` runs before ``AccessControlMiddleware``: on a dashboard request
without an ``Authorization`` header it presents the cookie's access token as a bearer token, so
every page goes through the same access rules and refusal audit as the API. When the access token
has expired it rotates the refresh token first and sets the new cookies on the response.

Two requests of one browser can arrive together just after expiry (a page load and the inbox
poll). Presenting one refresh token twice would look like theft and end the session (reuse
detection), so rotations are serialised per refresh token in this process and the result is reused
for a short while. Across replicas the proxy's sticky sessions (deploy/) keep one browser on one
instance; without them a rare race ends the session, which fails safe (the user logs in again).

Also here: the security headers every dashboard response carries (CSP without inline script or
style, no framing, no referrer, no caching of pages that show patient data).
"""

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from datetime import datetime
from http.cookies import CookieError, SimpleCookie
from typing import Final

from litestar import Litestar
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from backend.identity import sessions
from backend.identity.errors import RecordedDenial
from backend.identity.schemas import TokenPair
from backend.identity.tokens import Audience, InvalidToken, read_access_token
from backend.state import Runtime

logger = logging.getLogger("interlude.dashboard")

DASHBOARD_PATH: Final = "/dashboard"
STATIC_PATH: Final = DASHBOARD_PATH + "/static"
ACCESS_COOKIE: Final = "interlude_access"
REFRESH_COOKIE: Final = "interlude_refresh"
CSRF_COOKIE: Final = "interlude_csrf"
# A password-only login of an account that must enrol TOTP first gets an enrolment-stage token
# (no refresh token); it is presented only on the enrolment pages below.
ENROLMENT_COOKIE: Final = "interlude_totp_enrolment"
TOTP_PATH: Final = DASHBOARD_PATH + "/totp"
# Rotated pairs are remembered this long for a request that raced the rotation.
_ROTATION_GRACE_SECONDS: Final = 30.0
_ROTATION_CACHE_SIZE: Final = 256
# Refresh a little before expiry so a page load and its poll rarely straddle it.
_REFRESH_AHEAD_SECONDS: Final = 60

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS: Final = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
)


def is_dashboard_path(path: str) -> bool:
    return path == DASHBOARD_PATH or path.startswith(DASHBOARD_PATH + "/")


def cookies_are_secure(runtime: Runtime, scheme: str) -> bool:
    return scheme in {"https", "wss"} or runtime.settings.is_production


def session_cookies(pair: TokenPair, *, secure: bool, now: datetime) -> list[Cookie]:
    """The two cookies that carry a token pair (each expires with its token)."""
    return [
        Cookie(
            key=ACCESS_COOKIE,
            value=pair.access_token,
            path=DASHBOARD_PATH,
            max_age=max(0, int((pair.access_token_expires_at - now).total_seconds())),
            httponly=True,
            secure=secure,
            samesite="strict",
        ),
        Cookie(
            key=REFRESH_COOKIE,
            value=pair.refresh_token,
            path=DASHBOARD_PATH,
            max_age=max(0, int((pair.refresh_token_expires_at - now).total_seconds())),
            httponly=True,
            secure=secure,
            samesite="strict",
        ),
    ]


def enrolment_cookie(token: str, *, secure: bool, max_age: int) -> Cookie:
    return Cookie(
        key=ENROLMENT_COOKIE,
        value=token,
        path=TOTP_PATH,
        max_age=max_age,
        httponly=True,
        secure=secure,
        samesite="strict",
    )


def cleared_enrolment_cookie(*, secure: bool) -> Cookie:
    return enrolment_cookie("", secure=secure, max_age=0)


def cleared_cookies(*, secure: bool) -> list[Cookie]:
    return [cleared_enrolment_cookie(secure=secure)] + [
        Cookie(
            key=name,
            value="",
            path=DASHBOARD_PATH,
            max_age=0,
            httponly=True,
            secure=secure,
            samesite="strict",
        )
        for name in (ACCESS_COOKIE, REFRESH_COOKIE)
    ]


def _request_cookies(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"cookie":
            parsed: SimpleCookie = SimpleCookie()
            # A malformed cookie header counts as no cookies (the login page follows).
            with contextlib.suppress(CookieError):
                parsed.load(value.decode("latin-1"))
            found.update({key: morsel.value for key, morsel in parsed.items()})
    return found


def _has_authorization(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope["headers"])


_BROWSER_KEY: Final = "interlude.dashboard.browser"


def is_browser_request(scope: Scope) -> bool:
    """True for a dashboard request that came without its own ``Authorization`` header: its
    credentials (if any) are cookies, so it needs CSRF protection and gets pages, not JSON."""
    return bool(scope.get("state", {}).get(_BROWSER_KEY))


class _Rotations:
    """Serialises refresh-token rotations per token and remembers their results briefly."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._done: OrderedDict[str, tuple[float, TokenPair]] = OrderedDict()

    async def rotate(self, runtime: Runtime, refresh_token: str) -> TokenPair | None:
        lock = self._locks.setdefault(refresh_token, asyncio.Lock())
        try:
            async with lock:
                cached = self._done.get(refresh_token)
                if cached is not None and time.monotonic() - cached[0] < _ROTATION_GRACE_SECONDS:
                    return cached[1]
                pair = await _rotate(runtime, refresh_token)
                if pair is not None:
                    self._done[refresh_token] = (time.monotonic(), pair)
                    while len(self._done) > _ROTATION_CACHE_SIZE:
                        self._done.popitem(last=False)
                return pair
        finally:
            if not lock.locked():
                self._locks.pop(refresh_token, None)


async def _rotate(runtime: Runtime, refresh_token: str) -> TokenPair | None:
    async with runtime.require_sessionmaker()() as session:
        try:
            pair = await sessions.rotate(session, runtime, refresh_token)
        except RecordedDenial:
            await session.commit()  # keep the audit row (and a revoked family on reuse)
            return None
        await session.commit()
        return pair


def _access_token_usable(runtime: Runtime, token: str) -> bool:
    try:
        claims = read_access_token(
            runtime.secrets.token_signing_key,
            token,
            audiences=frozenset({Audience.STAFF}),
            now=runtime.clock.now(),
        )
    except InvalidToken:
        return False
    return claims.exp - _REFRESH_AHEAD_SECONDS > runtime.clock.now().timestamp()


class DashboardSessionMiddleware(ASGIMiddleware):
    """Cookie session to bearer token for dashboard routes, plus their security headers."""

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self._rotations = _Rotations()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if not is_dashboard_path(scope["path"]):
            await next_app(scope, receive, send)
            return
        runtime = Litestar.from_scope(scope).state.runtime
        assert isinstance(runtime, Runtime)
        new_cookies: list[Cookie] = []
        # A caller with its own Authorization header (an API client) is judged on that alone.
        browser = not _has_authorization(scope)
        scope.setdefault("state", {})[_BROWSER_KEY] = browser
        if browser and not scope["path"].startswith(STATIC_PATH + "/"):
            cookies = _request_cookies(scope)
            token = cookies.get(ACCESS_COOKIE)
            if token is None or not _access_token_usable(runtime, token):
                token = None
                refresh = cookies.get(REFRESH_COOKIE)
                if refresh:
                    pair = await self._rotations.rotate(runtime, refresh)
                    secure = cookies_are_secure(runtime, scope["scheme"])
                    if pair is not None:
                        token = pair.access_token
                        new_cookies = session_cookies(pair, secure=secure, now=runtime.clock.now())
                    else:
                        new_cookies = cleared_cookies(secure=secure)
            if token is None and (
                scope["path"] == TOTP_PATH or scope["path"].startswith(TOTP_PATH + "/")
            ):
                # The access rules let this stage reach only the enrolment routes.
                token = cookies.get(ENROLMENT_COOKIE) or None
            if token is not None:
                scope["headers"] = [
                    *scope["headers"],
                    (b"authorization", b"Bearer " + token.encode()),
                ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in SECURITY_HEADERS:
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
                for cookie in new_cookies:
                    headers.add("set-cookie", cookie.to_header(header=""))
            await send(message)

        await next_app(scope, receive, send_with_headers)
