"""Blind indexes (engineering-notes §D.6): HMAC-SHA256 under per-purpose HKDF-derived keys."""

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from backend.crypto import (
    BlindIndexer,
    BlindIndexPurpose,
    KeyMaterialError,
    derive_blind_index_root,
    generate_blind_index_root,
    normalise_email,
    normalise_identifier,
    normalise_phone,
    normalise_text,
    parse_blind_index_root,
)

ROOT = bytes(range(32))
EMAIL = BlindIndexPurpose("staff", "email", normalise=normalise_email)
PATIENT_EMAIL = BlindIndexPurpose("patients", "email", normalise=normalise_email)
PHONE = BlindIndexPurpose("patients", "phone", normalise=normalise_phone)
MRN = BlindIndexPurpose("patients", "mrn", normalise=normalise_identifier)
NAME = BlindIndexPurpose("patients", "family_name", normalise=normalise_text, truncate_to=2)


@pytest.fixture
def indexer() -> BlindIndexer:
    return BlindIndexer(ROOT)


def test_index_is_hmac_sha256_under_the_hkdf_key_for_the_purpose(indexer: BlindIndexer) -> None:
    # Computed independently from §D.2/§D.6: k = HKDF-SHA256(root, info="bi|staff|email|v1").
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"bi|staff|email|v1").derive(
        ROOT
    )
    expected = hmac.new(key, b"ana@example.org", hashlib.sha256).digest()
    assert indexer.compute(EMAIL, " Ana@Example.ORG ") == expected


def test_index_is_deterministic_across_instances() -> None:
    assert BlindIndexer(ROOT).compute(EMAIL, "ana@example.org") == BlindIndexer(ROOT).compute(
        EMAIL, "ana@example.org"
    )


def test_unique_lookup_indexes_are_full_length(indexer: BlindIndexer) -> None:
    assert len(indexer.compute(EMAIL, "ana@example.org")) == 32


def test_truncated_index_is_a_prefix_of_the_full_one(indexer: BlindIndexer) -> None:
    full = BlindIndexPurpose("patients", "family_name", normalise=normalise_text)
    assert indexer.compute(NAME, "Okafor") == indexer.compute(full, "Okafor")[:2]


@pytest.mark.parametrize(
    ("purpose", "a", "b"),
    [
        (EMAIL, "Ana@Example.org", "  ana@example.ORG\n"),
        (PHONE, "+44 (0)20 7946-0958", "440207946 0958"),
        (PHONE, "\uff10\uff12\uff10 \uff17\uff19", "02079"),  # full-width digits (CJK keyboards)
        (MRN, "ab-123 456", "AB123456"),
        (MRN, "ab/123.456", "AB123456"),
        (NAME, "  O'Brien   Smith ", "o'brien smith"),
        (NAME, "Stra\u00dfe", "STRASSE"),  # case folding
        (NAME, "Zo\u00eb", "Zoe\u0308"),  # composed and decomposed forms
    ],
)
def test_normalisation_makes_equivalent_inputs_equal(
    indexer: BlindIndexer, purpose: BlindIndexPurpose, a: str, b: str
) -> None:
    assert indexer.compute(purpose, a) == indexer.compute(purpose, b)


def test_normalisers() -> None:
    assert normalise_email("  Ana.B@Example.ORG ") == "ana.b@example.org"
    assert normalise_phone("+1 (555) 010-0199") == "15550100199"
    assert normalise_identifier(" mrn-0042 ") == "MRN0042"
    assert normalise_text("  Mary   ANNE ") == "mary anne"


def test_different_values_give_different_indexes(indexer: BlindIndexer) -> None:
    assert indexer.compute(EMAIL, "ana@example.org") != indexer.compute(EMAIL, "ann@example.org")


def test_different_purposes_give_different_indexes_for_one_value(indexer: BlindIndexer) -> None:
    value = "ana@example.org"
    v2 = BlindIndexPurpose("staff", "email", version=2, normalise=normalise_email)
    indexes = {
        indexer.compute(EMAIL, value),
        indexer.compute(PATIENT_EMAIL, value),
        indexer.compute(v2, value),
        indexer.compute(BlindIndexPurpose("staff", "login", normalise=normalise_email), value),
    }
    assert len(indexes) == 4


def test_different_roots_give_different_indexes() -> None:
    other = BlindIndexer(bytes(reversed(range(32))))
    assert BlindIndexer(ROOT).compute(EMAIL, "a@b.c") != other.compute(EMAIL, "a@b.c")


@given(st.text(min_size=1, max_size=64).filter(lambda s: s.strip()))
def test_index_never_contains_the_value(value: str) -> None:
    purpose = BlindIndexPurpose("patients", "note_tag")
    index = BlindIndexer(ROOT).compute(purpose, value)
    assert len(index) == 32
    encoded = value.encode()
    if len(encoded) >= 4:
        assert encoded not in index


@pytest.mark.parametrize(("purpose", "value"), [(PHONE, "n/a"), (EMAIL, "   "), (NAME, "\t")])
def test_values_that_normalise_to_nothing_are_refused(
    indexer: BlindIndexer, purpose: BlindIndexPurpose, value: str
) -> None:
    with pytest.raises(ValueError, match="empty after normalisation"):
        indexer.compute(purpose, value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"table": "staff|x", "column": "email"},  # would make the HKDF info ambiguous
        {"table": "staff", "column": "e|mail"},
        {"table": "Staff", "column": "email"},
        {"table": "", "column": "email"},
        {"table": "staff", "column": "email", "version": 0},
        {"table": "staff", "column": "email", "truncate_to": 0},
        {"table": "staff", "column": "email", "truncate_to": 33},
    ],
)
def test_invalid_purposes_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        BlindIndexPurpose(**kwargs)  # type: ignore[arg-type]


def test_purpose_info_string() -> None:
    assert BlindIndexPurpose("patients", "mrn", version=3).info == b"bi|patients|mrn|v3"


# --- root key ---


@pytest.mark.parametrize("root", [b"", bytes(16), bytes(33)])
def test_root_key_must_be_32_bytes(root: bytes) -> None:
    with pytest.raises(KeyMaterialError):
        BlindIndexer(root)


def test_root_from_configuration_round_trips() -> None:
    value = generate_blind_index_root()
    assert parse_blind_index_root(value) == base64.b64decode(value)
    assert len(parse_blind_index_root(f"  {value}\n")) == 32


@pytest.mark.parametrize(
    "value",
    ["", "not base64!", base64.b64encode(bytes(16)).decode(), base64.b64encode(b"Q" * 40).decode()],
)
def test_bad_root_configuration_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        parse_blind_index_root(value)
    if value:
        assert value not in str(caught.value)


def test_root_derived_from_dedicated_material_is_stable_and_not_the_material() -> None:
    material = b"\x5a" * 48
    root = derive_blind_index_root(material)
    assert root == derive_blind_index_root(material)
    assert len(root) == 32
    assert root not in material
    assert derive_blind_index_root(b"\x5b" * 48) != root


def test_root_derivation_needs_enough_material() -> None:
    with pytest.raises(KeyMaterialError):
        derive_blind_index_root(b"short")


def test_indexer_repr_hides_the_root() -> None:
    text = repr(BlindIndexer(ROOT))
    assert ROOT.hex() not in text
    assert repr(ROOT) not in text


def test_values_must_be_text(indexer: BlindIndexer) -> None:
    with pytest.raises(TypeError):
        indexer.compute(EMAIL, b"ana@example.org")  # type: ignore[arg-type]
