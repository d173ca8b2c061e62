"""Enrolment codes: what a clinician reads to a patient and the app exchanges for tokens.

Eight characters from a 30-symbol alphabet without look-alikes (no 0/O, 1/I/L, no U, as in
Crockford's base32), about 39 bits: enough because a code lives 72 hours, works once, and
redemption is rate limited per source address. Only an HMAC of the code is stored
(see ``EnrolmentCode``).
"""

import secrets
from datetime import timedelta
from typing import Final

from backend.crypto import BlindIndexPurpose

ALPHABET: Final = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
CODE_LENGTH: Final = 8
CODE_LIFETIME: Final = timedelta(hours=72)


def normalise_code(value: str) -> str:
    """What the patient typed, in the form that was hashed: upper case, without the spaces and
    dashes of the displayed form (``ABCD-EFGH``)."""
    return "".join(value.split()).replace("-", "").upper()


CODE_PURPOSE: Final = BlindIndexPurpose(
    table="enrolment_codes", column="code_index", normalise=normalise_code
)


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def display_code(code: str) -> str:
    """``ABCDEFGH`` as ``ABCD-EFGH``, easier to read aloud and type."""
    return f"{code[:4]}-{code[4:]}"


def is_well_formed(value: str) -> bool:
    code = normalise_code(value)
    return len(code) == CODE_LENGTH and all(ch in ALPHABET for ch in code)
