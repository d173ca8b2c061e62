"""The free-text keyword trigger (clinical-spec §5.3 rule 1): case-insensitive, whole words, any
spacing or hyphenation between the words of a phrase; the clinic's list is validated."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.alerts.parameters import load_parameters
from backend.domain.safety.keywords import keyword_problems, matches_any

DEFAULT = load_parameters().suicidality.free_text_keywords


@pytest.mark.parametrize(
    "text",
    [
        "I want to die.",
        "sometimes I think about SUICIDE",
        "I could kill  myself",
        "thought about Kill-Myself stuff",
        "I don\u2019t want to live like this",  # a typographic apostrophe
        "better off dead, honestly",
        "(self harm again)",
        "self\u2010harm",  # a typographic hyphen
        "Suicidal thoughts at night",
    ],
)
def test_default_keywords_match_whole_words_in_any_case_and_spacing(text: str) -> None:
    assert matches_any(text, DEFAULT)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Slept well, walked the dog",
        "on a diet, feeling better",  # "die" is not a keyword, and never inside a word
        "skilled myself in cooking",  # "kill myself" only as whole words
        "the bandwidth of overdoses-free clinics",  # "overdose" not inside "overdoses"
    ],
)
def test_no_match_inside_other_words_or_in_ordinary_text(text: str) -> None:
    assert not matches_any(text, DEFAULT)


def test_an_empty_list_matches_nothing() -> None:
    assert not matches_any("I want to die", ())


words = st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=8)


@given(
    keyword=st.lists(words, min_size=1, max_size=3).map(" ".join),
    before=st.text(alphabet=string.ascii_letters + " .,!?", max_size=20),
    after=st.text(alphabet=string.ascii_letters + " .,!?", max_size=20),
    separator=st.sampled_from([" ", "  ", "-", " - ", "\n", "_"]),
)
def test_a_keyword_set_apart_by_non_letters_always_matches(
    keyword: str, before: str, after: str, separator: str
) -> None:
    phrase = keyword.replace(" ", separator).upper()
    assert matches_any(f"{before} {phrase} {after}", (keyword,))


@given(keyword=words, glued=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=4))
def test_a_keyword_glued_to_more_letters_never_matches(keyword: str, glued: str) -> None:
    assert not matches_any(glued + keyword + glued, (keyword,))


@given(text=st.text(alphabet=string.ascii_letters + " '-.", max_size=200))
def test_matching_ignores_case(text: str) -> None:
    assert matches_any(text.upper(), DEFAULT) == matches_any(text.lower(), DEFAULT)


def test_the_shipped_list_is_valid_and_bad_lists_are_refused() -> None:
    assert keyword_problems(DEFAULT) == []
    assert keyword_problems(["ok", "  ", "--"]) == [
        "keyword 1 has no letters or digits",
        "keyword 2 has no letters or digits",
    ]
    assert keyword_problems(["self harm", "Self-Harm"]) == ["keyword 1 repeats an earlier one"]
    assert keyword_problems(["x" * 81]) == ["keyword 0 is longer than 80 characters"]
    assert keyword_problems(["k"] * 201)[-1] == "at most 200 keywords"
