"""Enrolment codes: short, unambiguous, typed forgivingly."""

from hypothesis import given
from hypothesis import strategies as st

from backend.identity import enrolment


def test_codes_use_only_the_unambiguous_alphabet() -> None:
    for _ in range(200):
        code = enrolment.new_code()
        assert len(code) == enrolment.CODE_LENGTH
        assert set(code) <= set(enrolment.ALPHABET)
    assert not set("01ILOU") & set(enrolment.ALPHABET)


def test_display_form_and_typed_variants_normalise_to_the_code() -> None:
    code = "ABCD2345"
    assert enrolment.display_code(code) == "ABCD-2345"
    for typed in ("ABCD-2345", "abcd 2345", " abcd-2345 ", "AB CD 23 45"):
        assert enrolment.normalise_code(typed) == code
        assert enrolment.is_well_formed(typed)


@given(st.text(max_size=20))
def test_well_formed_means_eight_symbols_of_the_alphabet(text: str) -> None:
    normalised = enrolment.normalise_code(text)
    assert enrolment.is_well_formed(text) == (
        len(normalised) == 8 and set(normalised) <= set(enrolment.ALPHABET)
    )
