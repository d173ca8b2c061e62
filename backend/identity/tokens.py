"""Access tokens (short-lived HS256 JWTs) and refresh tokens (opaque, stored as SHA-256).

This module checks access tokens without the database: signature, issuer, audience and
expiry against the one clock. Each names its audience ("staff" or "patient"), so a patient's
token is refused by a staff route even before roles are compared, and carries ``sid`` (the
refresh-token family) so a logout can name the session it ends. They live 15 minutes, the
lifetime litestar-fullstack uses; revocation acts on refresh tokens, so a stolen patient access
token is useful for at most that long. A staff token is also compared with its account on every
request (``middleware``): once an admin disables the account or changes its role, the token is
refused at once.
"""

import functools
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import jwt
import msgspec

from backend.identity.roles import Role

ISSUER: Final = "interlude"
ALGORITHM: Final = "HS256"
ACCESS_TOKEN_LIFETIME: Final = timedelta(minutes=15)
# A token issued by another instance whose clock runs slightly ahead is still accepted.
CLOCK_SKEW: Final = timedelta(seconds=30)
STAFF_REFRESH_LIFETIME: Final = timedelta(hours=12)  # one working day: staff log in per shift
PATIENT_REFRESH_LIFETIME: Final = timedelta(days=90)  # a phone stays enrolled between visits
_MIN_KEY_BYTES: Final = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output


class Audience(StrEnum):
    STAFF = "staff"
    PATIENT = "patient"


class Stage(StrEnum):
    """What a token is good for. ``TOTP_ENROLMENT`` reaches only the TOTP enrolment routes: it is
    what a password-only login yields for an account that must enrol a second factor first."""

    FULL = "full"
    TOTP_ENROLMENT = "totp_enrolment"


class AccessClaims(msgspec.Struct, frozen=True, kw_only=True):
    iss: str
    aud: str
    sub: str
    role: str
    clinic: str | None
    sid: str
    jti: str
    iat: int
    exp: int
    stage: str = Stage.FULL.value
    dev: str | None = None


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or meant for someone else.

    ``reason`` is a short code for the audit log; the caller sees one generic message.
    """

    message_is_safe_to_log = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def audience_for(role: Role) -> Audience:
    return Audience.PATIENT if role is Role.PATIENT else Audience.STAFF


def issue_access_token(
    key: bytes,
    *,
    subject_id: uuid.UUID,
    role: Role,
    clinic_id: uuid.UUID | None,
    session_id: uuid.UUID,
    now: datetime,
    device_id: uuid.UUID | None = None,
    stage: Stage = Stage.FULL,
    lifetime: timedelta = ACCESS_TOKEN_LIFETIME,
) -> tuple[str, datetime]:
    """A signed access token and its expiry."""
    _check_key(key)
    expires_at = now + lifetime
    claims = AccessClaims(
        iss=ISSUER,
        aud=audience_for(role).value,
        sub=str(subject_id),
        role=role.value,
        clinic=str(clinic_id) if clinic_id is not None else None,
        sid=str(session_id),
        jti=uuid.uuid4().hex,
        iat=int(now.timestamp()),
        exp=int(expires_at.timestamp()),
        stage=stage.value,
        dev=str(device_id) if device_id is not None else None,
    )
    payload = msgspec.to_builtins(claims)
    return jwt.encode(payload, key, algorithm=ALGORITHM), expires_at


def read_access_token(
    key: bytes, token: str, *, audiences: frozenset[Audience], now: datetime
) -> AccessClaims:
    """The verified claims of ``token``; raises ``InvalidToken`` with the reason otherwise."""
    _check_key(key)
    claims = _verified(key, token, audiences)
    if claims.exp <= int((now - CLOCK_SKEW).timestamp()):
        raise InvalidToken("expired")
    if claims.iat > int((now + CLOCK_SKEW).timestamp()):
        raise InvalidToken("issued_in_future")
    return claims


# A phone sends the same access token with every request for its 15 minutes: the signature and
# the claims' shape are checked once per token (and key), the times on every use. Only tokens
# that passed are remembered (an exception is never cached); the claims are immutable.
@functools.lru_cache(maxsize=4096)
def _verified(key: bytes, token: str, audiences: frozenset[Audience]) -> AccessClaims:
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],  # never trust the header's "alg" (RFC 8725 §3.1)
            issuer=ISSUER,
            audience=[a.value for a in audiences],
            # Times are checked by the caller against the service clock (one clock).
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["iss", "aud", "sub", "exp", "iat", "jti"],
            },
        )
    except jwt.InvalidAudienceError:
        raise InvalidToken("wrong_audience") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad_signature") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("wrong_issuer") from None
    except jwt.PyJWTError:
        raise InvalidToken("malformed") from None
    try:
        claims = msgspec.convert(payload, AccessClaims)
        Role(claims.role)
        Stage(claims.stage)
        uuid.UUID(claims.sub)
        uuid.UUID(claims.sid)
        if claims.clinic is not None:
            uuid.UUID(claims.clinic)
        if claims.dev is not None:
            uuid.UUID(claims.dev)
    except (msgspec.ValidationError, ValueError):
        raise InvalidToken("malformed") from None
    if claims.aud != audience_for(Role(claims.role)).value:
        raise InvalidToken("wrong_audience")
    return claims


def new_refresh_token() -> str:
    """256 random bits, URL-safe; shown to the client once and stored only as its hash."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_key(key: bytes) -> None:
    if len(key) < _MIN_KEY_BYTES:
        msg = f"the token signing key must be at least {_MIN_KEY_BYTES} bytes"
        raise ValueError(msg)
