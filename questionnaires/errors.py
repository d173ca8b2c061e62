"""The errors the questionnaire package raises, one type per failure.

Messages never contain answer values: answers are PHI, and these errors end up in logs and
problem-details bodies. Problems name the item (linkId) and a machine-readable code instead.
"""

from __future__ import annotations

from typing import Literal

import msgspec

ProblemCode = Literal[
    "wrong_instrument",
    "wrong_version",
    "unknown_item",
    "duplicate_item",
    "wrong_type",
    "not_an_option",
    "out_of_range",
    "not_above",
    "too_long",
    "missing_required",
    "not_enabled",
    "multiple_answers",
    "malformed",
]


class AnswerProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing wrong with a submission; `link_id` is None when no single item is at fault."""

    code: ProblemCode
    link_id: str | None = None


class InstrumentDefinitionError(ValueError):
    """An instrument file is malformed or clinically inconsistent; raised at load time."""


class UnknownInstrumentError(LookupError):
    """No instrument with this id (and version) is in the catalogue."""

    def __init__(self, instrument_id: str, version: str | None = None) -> None:
        self.instrument_id = instrument_id
        self.version = version
        which = instrument_id if version is None else f"{instrument_id} version {version}"
        super().__init__(f"unknown instrument: {which}")


class AnswerValidationError(ValueError):
    """Submitted answers do not fit the instrument; carries every problem found."""

    def __init__(self, problems: list[AnswerProblem]) -> None:
        self.problems = tuple(problems)
        listed = ", ".join(
            p.code if p.link_id is None else f"{p.link_id}: {p.code}" for p in self.problems
        )
        super().__init__(f"invalid answers ({listed})")
