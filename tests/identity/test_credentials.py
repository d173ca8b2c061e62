"""Passwords, TOTP codes, access tokens and refresh tokens: the pure parts of signing in."""

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import jwt
import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.identity import passwords, totp
from backend.identity.roles import Role, totp_required
from backend.identity.tokens import (
    ACCESS_TOKEN_LIFETIME,
    CLOCK_SKEW,
    Audience,
    InvalidToken,
    Stage,
    hash_refresh_token,
    issue_access_token,
    new_refresh_token,
    read_access_token,
)

KEY = b"k" * 32
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STAFF = frozenset({Audience.STAFF})
PATIENT = frozenset({Audience.PATIENT})


def test_password_hash_is_argon2id_and_verifies_only_the_same_password() -> None:
    stored = passwords.hash_password_sync("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password_sync(stored, "correct horse battery")
    assert not passwords.verify_password_sync(stored, "correct horse batterY")
    assert not passwords.verify_password_sync("not a hash", "correct horse battery")


async def test_verifying_without_a_stored_hash_is_false_even_for_the_decoy_password() -> None:
    assert not await passwords.verify_password(None, "")
    assert not await passwords.verify_password(None, "anything")
    stored = await passwords.hash_password("a long enough password")
    assert await passwords.verify_password(stored, "a long enough password")


def test_one_time_passwords_are_long_and_distinct() -> None:
    seen = {passwords.generate_one_time_password() for _ in range(50)}
    assert len(seen) == 50
    assert all(len(p) >= passwords.MIN_PASSWORD_LENGTH for p in seen)


def test_totp_accepts_current_and_adjacent_steps_and_rejects_replay() -> None:
    secret = totp.new_secret()
    reference = pyotp.TOTP(secret)
    step = totp.time_step(NOW)
    assert totp.accepted_step(secret, reference.at(NOW), at=NOW, last_step=None) == step
    earlier = reference.at(NOW - timedelta(seconds=30))
    assert totp.accepted_step(secret, earlier, at=NOW, last_step=None) == step - 1
    too_old = reference.at(NOW - timedelta(seconds=90))
    assert totp.accepted_step(secret, too_old, at=NOW, last_step=None) is None
    # The same code again, after it was accepted, is a replay.
    assert totp.accepted_step(secret, reference.at(NOW), at=NOW, last_step=step) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦"])
def test_totp_rejects_malformed_codes(code: str) -> None:
    assert totp.accepted_step(totp.new_secret(), code, at=NOW, last_step=None) is None


def test_provisioning_uri_names_the_issuer_and_secret() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "a@example.org")
    assert uri.startswith("otpauth://totp/")
    assert f"secret={secret}" in uri
    assert "issuer=Interlude" in uri


@pytest.mark.parametrize(
    ("role", "clinic_flag", "expected"),
    [
        (Role.CLINIC_ADMIN, False, True),
        (Role.OPERATOR, False, True),
        (Role.CLINICIAN, False, False),
        (Role.CLINICIAN, True, True),
        (Role.RESEARCHER, True, True),
        (Role.RESEARCHER, False, False),
        (Role.PATIENT, True, False),
    ],
)
def test_totp_is_required_for_admins_and_operators_and_per_clinic_for_others(
    role: Role, clinic_flag: bool, expected: bool
) -> None:
    assert totp_required(role, clinic_requires_totp_for_all_staff=clinic_flag) is expected


def _token(role: Role = Role.CLINICIAN, **kwargs: object) -> str:
    token, _ = issue_access_token(
        KEY,
        subject_id=uuid4(),
        role=role,
        clinic_id=uuid4(),
        session_id=uuid4(),
        now=kwargs.pop("now", NOW),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )
    return token


def test_access_token_round_trip() -> None:
    token, expires_at = issue_access_token(
        KEY, subject_id=uuid4(), role=Role.PATIENT, clinic_id=uuid4(), session_id=uuid4(), now=NOW
    )
    assert expires_at == NOW + ACCESS_TOKEN_LIFETIME
    claims = read_access_token(KEY, token, audiences=PATIENT, now=NOW)
    assert claims.aud == "patient"
    assert claims.role == "patient"
    assert claims.stage == Stage.FULL
    assert claims.iss == "interlude"


def test_staff_token_is_refused_where_patients_are_expected_and_vice_versa() -> None:
    with pytest.raises(InvalidToken) as refused:
        read_access_token(KEY, _token(Role.CLINICIAN), audiences=PATIENT, now=NOW)
    assert refused.value.reason == "wrong_audience"
    with pytest.raises(InvalidToken):
        read_access_token(KEY, _token(Role.PATIENT), audiences=STAFF, now=NOW)


def test_expired_token_is_refused_after_the_skew_allowance() -> None:
    token = _token()
    still = NOW + ACCESS_TOKEN_LIFETIME + CLOCK_SKEW - timedelta(seconds=1)
    read_access_token(KEY, token, audiences=STAFF, now=still)
    with pytest.raises(InvalidToken) as refused:
        read_access_token(KEY, token, audiences=STAFF, now=still + timedelta(seconds=2))
    assert refused.value.reason == "expired"


def test_token_from_the_future_is_refused() -> None:
    token = _token(now=NOW + timedelta(minutes=5))
    with pytest.raises(InvalidToken) as refused:
        read_access_token(KEY, token, audiences=STAFF, now=NOW)
    assert refused.value.reason == "issued_in_future"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_tampered_claims_fail_the_signature() -> None:
    header, payload, signature = _token(Role.CLINICIAN).split(".")
    claims = json.loads(_unb64(payload))
    claims["role"] = "clinic_admin"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(InvalidToken) as refused:
        read_access_token(KEY, forged, audiences=STAFF, now=NOW)
    assert refused.value.reason == "bad_signature"


def test_other_key_and_alg_none_are_refused() -> None:
    with pytest.raises(InvalidToken):
        read_access_token(b"x" * 32, _token(), audiences=STAFF, now=NOW)
    claims = jwt.decode(_token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]  # alg none
    with pytest.raises(InvalidToken):
        read_access_token(KEY, unsigned, audiences=STAFF, now=NOW)


def test_role_must_match_audience_even_if_signed() -> None:
    claims = jwt.decode(_token(Role.CLINICIAN), options={"verify_signature": False})
    claims["aud"] = "patient"
    confused = jwt.encode(claims, KEY, algorithm="HS256")
    with pytest.raises(InvalidToken) as refused:
        read_access_token(KEY, confused, audiences=PATIENT, now=NOW)
    assert refused.value.reason == "wrong_audience"


@given(st.text(max_size=300))
def test_garbage_is_refused_never_crashes(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        read_access_token(KEY, garbage, audiences=STAFF, now=NOW)


def test_short_signing_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _ = issue_access_token(
            b"short",
            subject_id=uuid4(),
            role=Role.OPERATOR,
            clinic_id=None,
            session_id=uuid4(),
            now=NOW,
        )


def test_refresh_tokens_are_random_and_stored_as_sha256() -> None:
    token = new_refresh_token()
    assert len(token) >= 43
    assert token != new_refresh_token()
    assert hash_refresh_token(token) == hashlib.sha256(token.encode()).hexdigest()
