"""Staff passwords: argon2id hashes (argon2-cffi), checked off the event loop.

argon2-cffi's default parameters are RFC 9106's second recommended profile (argon2id, t=3,
m=64 MiB, p=4), tuned to take tens of milliseconds, which is why hashing runs in a worker thread:
on the event loop it would stall every other request for that long.
"""

import secrets
from functools import cache
from typing import Final

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# NIST SP 800-63B §5.1.1.2: at least 8 characters, at least 64 accepted; we ask for 12 because
# staff accounts reach many patients' records.
MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 256

_hasher: Final = PasswordHasher()


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


def verify_password_sync(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _decoy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(hash_password_sync, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches. With no stored hash (unknown account, or no password set)
    a decoy hash is checked anyway, so the answer takes as long and reveals nothing."""
    candidate = stored_hash if stored_hash is not None else _decoy_hash()
    matched = await anyio.to_thread.run_sync(verify_password_sync, candidate, password)
    return matched and stored_hash is not None


def generate_one_time_password() -> str:
    """A 20-character random password (120 bits) for a new account, shown once."""
    return secrets.token_urlsafe(15)
