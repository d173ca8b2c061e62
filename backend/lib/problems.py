"""The one place that maps failures to HTTP: RFC 9457 problem details for every error response.

Every error leaves as ``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``
and the request id, plus ``errors`` (field pointers and codes) for invalid input. A 500 says only
that something failed and which request id to quote; the traceback goes to the log.
"""

import logging
import uuid
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from backend.lib.errors import DomainError, FieldProblem
from backend.lib.logging import request_id_var
from questionnaires.errors import AnswerValidationError

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_TYPE_PREFIX: Final = "urn:interlude:problem:"
logger = logging.getLogger("interlude.http")


class Problem(msgspec.Struct, omit_defaults=True, kw_only=True):
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldProblem] | None = None


def _request_id() -> str:
    current = request_id_var.get()
    return current if current is not None else uuid.uuid4().hex


def _respond(problem: Problem, headers: dict[str, str] | None = None) -> Response[Problem]:
    # ``instance`` names this occurrence by request id, never by the raw path, which could carry
    # whatever a client put into it.
    problem.instance = f"urn:interlude:request:{problem.request_id}"
    all_headers = {"x-request-id": problem.request_id or ""}
    if headers:
        all_headers.update(headers)
    return Response(
        content=problem,
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=all_headers,
    )


def _validation_errors(extra: Any) -> list[FieldProblem]:
    if not isinstance(extra, list):
        return []
    problems = []
    for entry in extra:
        if isinstance(entry, dict):
            key = entry.get("key") or ""
            problems.append(
                FieldProblem(
                    pointer=str(key),
                    code="invalid",
                    message=str(entry.get("message", "invalid value")),
                )
            )
    return problems


def handle_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    return _respond(
        Problem(
            type=_TYPE_PREFIX + exc.problem_type,
            title=exc.title,
            status=exc.status_code,
            detail=exc.detail,
            request_id=_request_id(),
            errors=exc.errors or None,
        )
    )


def handle_answer_validation_error(
    request: Request[Any, Any, Any], exc: AnswerValidationError
) -> Response[Problem]:
    """Answers that do not fit the instrument: 422 naming each item (linkId) and a code."""
    return _respond(
        Problem(
            type=_TYPE_PREFIX + "invalid-answers",
            title="The answers do not fit the questionnaire",
            status=422,
            detail=f"{len(exc.problems)} problem(s) in the answers; nothing was stored.",
            request_id=_request_id(),
            errors=[
                FieldProblem(
                    pointer=problem.link_id or "",
                    code=problem.code,
                    message=problem.code.replace("_", " "),
                )
                for problem in exc.problems
            ],
        )
    )


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    request_id = _request_id()
    if status >= 500:
        logger.error("http error", extra={"fields": {"status": status, "request_id": request_id}})
        detail: str | None = "The service could not complete the request."
    else:
        detail = exc.detail if exc.detail and exc.detail != phrase else None
    errors = _validation_errors(exc.extra) if isinstance(exc, ValidationException) else None
    if status == 404 and request_id_var.get() is None:
        # Unrouted paths never reach the request middleware; log them here.
        logger.info(
            "request",
            extra={"fields": {"method": request.method, "route": None, "status": 404}},
        )
    return _respond(
        Problem(
            type="about:blank",
            title=phrase,
            status=status,
            detail=detail,
            request_id=request_id,
            errors=errors or None,
        ),
        headers=dict(exc.headers) if exc.headers else None,
    )


# SQLSTATEs that mean "no usable connection right now", not "a bad statement": admin and crash
# shutdown and "cannot connect now" (a PostgreSQL restart), too many connections. Class 08 is
# connection exceptions. asyncpg raises these as classes SQLAlchemy wraps in a plain DBAPIError.
_UNAVAILABLE_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03", "53300"})


# SQLSTATE class 40, transaction rollback: PostgreSQL aborted the transaction because it
# conflicted with a concurrent one (40001 serialization failure, 40P01 deadlock detected).
# Nothing was written and the same request succeeds when sent again: 503, never a 500.
_CONFLICT_SQLSTATES: Final = frozenset({"40001", "40P01"})


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None)
    return code if isinstance(code, str) else None


def _database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or gave no connection in time (not a bad query)."""
    if isinstance(exc, SQLAlchemyTimeoutError):  # connection pool exhausted
        return True
    if isinstance(exc, DBAPIError):
        code = _sqlstate(exc) or ""
        return (
            exc.connection_invalidated
            or isinstance(exc, OperationalError | InterfaceError)
            or code.startswith("08")
            or code in _UNAVAILABLE_SQLSTATES
        )
    return isinstance(exc, ConnectionError | TimeoutError)


def _transaction_conflict(exc: BaseException) -> str | None:
    """The SQLSTATE of a transaction the database aborted for a concurrent one, else None."""
    if isinstance(exc, DBAPIError):
        code = _sqlstate(exc)
        if code in _CONFLICT_SQLSTATES:
            return code
    return None


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    if _database_unavailable(exc):
        return handle_database_unavailable(request, exc)
    conflict = _transaction_conflict(exc)
    if conflict is not None:
        return _retry_later(
            "transaction conflict",
            {"sqlstate": conflict},
            "The request met a concurrent change and nothing was saved; send it again.",
        )
    request_id = _request_id()
    # The type and traceback are logged; the message may quote data, so it goes nowhere else.
    logger.error(
        "unhandled exception",
        exc_info=exc,
        extra={"fields": {"request_id": request_id, "error_type": type(exc).__name__}},
    )
    return _respond(
        Problem(
            type="about:blank",
            title="Internal Server Error",
            status=500,
            detail=f"The service failed unexpectedly; quote request id {request_id}.",
            request_id=request_id,
        )
    )


def handle_database_unavailable(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[Problem]:
    """503 with Retry-After: the request can be retried as is once the database is back (a phone
    retrying a submission with its Idempotency-Key stores it exactly once)."""
    return _retry_later(
        "database unavailable",
        {"error_type": type(exc).__name__},
        "The database is unavailable; retry shortly.",
    )


def _retry_later(event: str, fields: dict[str, str], detail: str) -> Response[Problem]:
    request_id = _request_id()
    logger.warning(event, extra={"fields": {"request_id": request_id, **fields}})
    return _respond(
        Problem(
            type=_TYPE_PREFIX + "service-unavailable",
            title="Service Unavailable",
            status=503,
            detail=detail,
            request_id=request_id,
        ),
        headers={"retry-after": "2"},
    )


exception_handlers: ExceptionHandlersMap = {
    DomainError: handle_domain_error,
    AnswerValidationError: handle_answer_validation_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
