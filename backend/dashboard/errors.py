"""How the dashboard answers failures: a browser (cookie credentials, asking for HTML) gets a page
or is sent to the login page; anything else, such as an API client with its own ``Authorization``
header, gets the same problem document as from the JSON API."""

from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from litestar.types import ExceptionHandlersMap

from backend.dashboard.session import DASHBOARD_PATH, SECURITY_HEADERS, is_browser_request
from backend.lib import problems
from backend.lib.errors import DomainError

LOGIN_PATH = DASHBOARD_PATH + "/login"

_MESSAGES = {
    400: "The request was not understood.",
    403: "You do not have access to this page, or the form had expired. Go back and try again.",
    404: "There is nothing here. The patient or alert may not exist in your clinic.",
    405: "This page cannot be used that way.",
    409: "Someone changed this in the meantime. Reload and try again.",
    422: "Some of what was entered is not valid.",
}


def safe_next(path: str | None) -> str:
    """Where to go after login: only a dashboard path, never another site (open redirect)."""
    if (
        path
        and path.startswith(DASHBOARD_PATH + "/")
        and "\\" not in path
        and not path.startswith(LOGIN_PATH)
    ):
        return path
    return DASHBOARD_PATH + "/"


def wants_page(request: Request[Any, Any, Any]) -> bool:
    """A browser's navigation or form post (and the inbox poll) asks for HTML."""
    return is_browser_request(request.scope) and "text/html" in request.headers.get("accept", "")


def _to_login(request: Request[Any, Any, Any]) -> Response[Any]:
    target = LOGIN_PATH
    if request.method == "GET":
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        target += "?next=" + quote(safe_next(path), safe="/")
    return Redirect(path=target, status_code=HTTP_303_SEE_OTHER)


def _page(request: Request[Any, Any, Any], status: int, detail: str | None) -> Response[Any]:
    message = _MESSAGES.get(status, "Something went wrong. Try again in a moment.")
    return Template(
        template_name="error.html",
        context={"status": status, "message": message, "detail": detail},
        status_code=status,
        headers=dict(SECURITY_HEADERS),
    )


def handle_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    if not wants_page(request):
        return problems.handle_domain_error(request, exc)
    if exc.status_code == 401:
        return _to_login(request)
    # Domain messages are written to be shown (and never carry PHI).
    return _page(request, exc.status_code, exc.detail)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if not wants_page(request):
        return problems.handle_http_exception(request, exc)
    if exc.status_code == 401:
        return _to_login(request)
    return _page(request, exc.status_code, None)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    response = problems.handle_unexpected(request, exc)  # logs it with the request id
    if not wants_page(request):
        return response
    return _page(request, 500, None)


DASHBOARD_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: handle_domain_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
