"""CSRF protection for the dashboard's forms (Litestar's double-submit ``CSRFMiddleware``).

Only browser requests need it: their credentials are cookies, which a browser attaches on its own.
A request that authenticates with its own ``Authorization`` header (an API client, the
authorisation-matrix test) cannot be forged by another site (a cross-site page cannot set that
header without a CORS preflight, which this service never grants), so it is judged without a
token, like the JSON API. The secret is derived from the service's token-signing key, so every
replica agrees on it without another setting.
"""

import hashlib
import hmac
from typing import Final

from litestar import Litestar
from litestar.config.csrf import CSRFConfig
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from backend.dashboard.session import CSRF_COOKIE, DASHBOARD_PATH, is_browser_request
from backend.state import Runtime

CSRF_FORM_FIELD: Final = "_csrf_token"  # what Litestar's middleware reads from a form
CSRF_HEADER: Final = "x-csrftoken"


def csrf_secret(runtime: Runtime) -> str:
    return hmac.new(
        runtime.secrets.token_signing_key, b"interlude dashboard csrf", hashlib.sha256
    ).hexdigest()


def csrf_config(runtime: Runtime, *, secure: bool) -> CSRFConfig:
    return CSRFConfig(
        secret=csrf_secret(runtime),
        cookie_name=CSRF_COOKIE,
        cookie_path=DASHBOARD_PATH,
        cookie_secure=secure,
        cookie_httponly=True,  # forms carry the token; no script needs the cookie
        cookie_samesite="strict",
        header_name=CSRF_HEADER,
    )


class DashboardCsrfMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self._configs: dict[bool, CSRFConfig] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if not is_browser_request(scope):
            await next_app(scope, receive, send)
            return
        runtime = Litestar.from_scope(scope).state.runtime
        assert isinstance(runtime, Runtime)
        secure = scope["scheme"] == "https" or runtime.settings.is_production
        # Built on first use: the secret needs the running service's keys.
        config = self._configs.get(secure)
        if config is None:
            config = self._configs[secure] = csrf_config(runtime, secure=secure)
        await CSRFMiddleware(app=next_app, config=config)(scope, receive, send)
