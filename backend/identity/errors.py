"""Failures of identity and access, each with its HTTP status (mapped in ``backend.lib.problems``).

Messages never say which part of a credential was wrong or whether an account exists.
"""

from backend.lib.errors import DomainError, Unauthorized


class TooManyAttempts(DomainError):
    status_code = 429
    problem_type = "too-many-attempts"
    title = "Too many failed attempts"


class TotpRequired(Unauthorized):
    problem_type = "totp-required"
    title = "A one-time code from the authenticator app is required"


class RecordedDenial(Exception):
    """A refusal whose record (audit row, failure counter, revoked token family) must persist.

    The request session rolls back on an exception, so the controller that owns the session
    commits what the service recorded, then raises ``error`` as the response.
    """

    message_is_safe_to_log = True

    def __init__(self, error: DomainError) -> None:
        super().__init__(error.detail)
        self.error = error


class SessionEnded(Exception):
    """A verified access token whose session (refresh-token family) was revoked since it was
    issued. Raised inside a unit of work, which rolls back; the route then records the refusal
    and answers 401 (`identity.middleware.refuse_ended_session`)."""
