"""Time-based one-time passwords (RFC 6238: SHA-1, 6 digits, 30-second steps, via pyotp).

A code is accepted one step either side of now for clock drift (RFC 6238 §5.2), and never twice:
the caller stores the accepted step and passes it back as ``last_step``.
"""

import hmac
from datetime import datetime
from typing import Final

import pyotp

STEP_SECONDS: Final = 30
DIGITS: Final = 6
DRIFT_STEPS: Final = 1
ISSUER: Final = "Interlude"


def new_secret() -> str:
    """A fresh base32 secret (160 bits, the RFC 4226 §4 recommended length)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from a QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def time_step(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def code_at_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def accepted_step(secret: str, code: str, *, at: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to, or None if it is wrong, too old, or already used."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now_step = time_step(at)
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(code_at_step(secret, step), code):
            return step
    return None
