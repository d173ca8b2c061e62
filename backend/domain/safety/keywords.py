"""Matching a patient's free text against the clinic's suicidality keyword list (clinical-spec
§5.3 rule 1: "a free-text message matched by the clinic's keyword list").

On the server, on decrypted text, case-insensitively and on word boundaries: "die" does not match
"diet", "kill myself" matches "Kill  myself", "KILL-MYSELF" and "kill myself." alike (the words
of a phrase may be separated by any run of spaces, hyphens or underscores). Text and keywords
are compared after Unicode compatibility normalisation and case folding, with typographic
apostrophes read as plain ones (U+2019 in "don\u2019t" = "don't").

The answer is only yes or no: neither the text nor the keyword that matched is returned, logged
or stored (a matched phrase quotes the patient). A crude net by design: it says "a clinician
should read this", never "this patient is safe".
"""

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

MAX_KEYWORDS: Final = 200
MAX_KEYWORD_LENGTH: Final = 80

_APOSTROPHES: Final = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_SEPARATORS: Final = re.compile(r"[\s\-\u2010-\u2015_]+")
_JOIN: Final = r"[\s\-\u2010-\u2015_]+"


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()


def _words(keyword: str) -> list[str]:
    return [word for word in _SEPARATORS.split(normalise(keyword)) if word]


@lru_cache(maxsize=256)
def _pattern(keywords: tuple[str, ...]) -> re.Pattern[str] | None:
    phrases = {_JOIN.join(re.escape(w) for w in words) for k in keywords if (words := _words(k))}
    if not phrases:
        return None
    # Longest first, so that a phrase wins over a word it starts with.
    alternatives = "|".join(sorted(phrases, key=lambda p: (-len(p), p)))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def matches_any(text: str, keywords: tuple[str, ...]) -> bool:
    """True when ``text`` contains any keyword or phrase as whole words."""
    pattern = _pattern(keywords)
    return pattern is not None and pattern.search(normalise(text)) is not None


def keyword_problems(keywords: Iterable[str]) -> list[str]:
    """Why a keyword list cannot be used (empty list allowed: the trigger is then off)."""
    problems: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for index, keyword in enumerate(keywords):
        if index >= MAX_KEYWORDS:
            problems.append(f"at most {MAX_KEYWORDS} keywords")
            break
        words = tuple(_words(keyword))
        if not words or not any(any(ch.isalnum() for ch in word) for word in words):
            problems.append(f"keyword {index} has no letters or digits")
        elif len(keyword) > MAX_KEYWORD_LENGTH:
            problems.append(f"keyword {index} is longer than {MAX_KEYWORD_LENGTH} characters")
        elif words in seen:
            problems.append(f"keyword {index} repeats an earlier one")
        seen.add(words)
    return problems
