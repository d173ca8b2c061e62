"""Domain errors. Each carries its HTTP status and a problem type; ``problems.py`` maps them.

Messages are shown to callers and written to logs, so they must never contain PHI.
"""

from typing import ClassVar

import msgspec


class FieldProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing wrong with the input: where (a JSON pointer or item linkId) and what (a code)."""

    pointer: str
    code: str
    message: str


class DomainError(Exception):
    message_is_safe_to_log = True

    status_code: ClassVar[int] = 400
    problem_type: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, errors: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class InvalidInput(DomainError):
    status_code = 422
    problem_type = "invalid-input"
    title = "The request is well-formed but its content is not valid"


class NotFound(DomainError):
    status_code = 404
    problem_type = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status_code = 409
    problem_type = "conflict"
    title = "Conflict with the current state"


class Unauthorized(DomainError):
    status_code = 401
    problem_type = "unauthorized"
    title = "Authentication required"


class Forbidden(DomainError):
    status_code = 403
    problem_type = "forbidden"
    title = "Not allowed"


class PreconditionFailed(DomainError):
    """An ``If-Match`` that no longer names the current version: the caller read a stale copy."""

    status_code = 412
    problem_type = "precondition-failed"
    title = "The resource changed since it was read"


class PreconditionRequired(DomainError):
    """A write that must be conditional came without ``If-Match`` (RFC 6585 §3)."""

    status_code = 428
    problem_type = "precondition-required"
    title = "This change must name the version it was made from"


class Gone(DomainError):
    status_code = 410
    problem_type = "gone"
    title = "No longer available"
