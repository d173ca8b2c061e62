"""The catalogue of shipped instruments: load once, look up by id and version, score.

Definitions are package data (`questionnaires/instruments/*.json`, read with importlib.resources),
one file per instrument version: `<id>.json`, and later versions as `<id>@<version>.json`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable

from questionnaires.answers import Submission
from questionnaires.definitions import decode_instrument
from questionnaires.errors import (
    AnswerProblem,
    AnswerValidationError,
    InstrumentDefinitionError,
    UnknownInstrumentError,
)
from questionnaires.model import Instrument, Licence
from questionnaires.scoring import Score, score


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class Catalogue:
    """Checked, immutable set of instrument versions."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._versions: dict[str, dict[str, Instrument]] = {}
        for instrument in instruments:
            versions = self._versions.setdefault(instrument.id, {})
            if instrument.version in versions:
                raise InstrumentDefinitionError(
                    f"{instrument.id} version {instrument.version} is defined twice"
                )
            versions[instrument.version] = instrument
        problems = list(self._cross_instrument_problems())
        if problems:
            raise InstrumentDefinitionError("; ".join(problems))

    def _cross_instrument_problems(self) -> Iterator[str]:
        # A trajectory pools scores over time, so it must never mix instruments or recall windows
        # (clinical-spec §1.0): one key per id, the same key and recall across its versions.
        owners: dict[str, str] = {}
        for instrument_id, versions in self._versions.items():
            keys = {(v.trajectory_key, v.recall) for v in versions.values()}
            if len(keys) > 1:
                yield f"{instrument_id}: versions differ in trajectory key or recall window"
            for key in {v.trajectory_key for v in versions.values()}:
                if owners.setdefault(key, instrument_id) != instrument_id:
                    yield f"trajectory key {key!r} is shared by {owners[key]} and {instrument_id}"

    def instruments(self) -> list[Instrument]:
        """The latest version of every instrument, ordered by id."""
        return [self.get(instrument_id) for instrument_id in sorted(self._versions)]

    def versions(self, instrument_id: str) -> list[str]:
        """All versions of one instrument, oldest first."""
        if instrument_id not in self._versions:
            raise UnknownInstrumentError(instrument_id)
        return sorted(self._versions[instrument_id], key=_version_key)

    def get(self, instrument_id: str, version: str | None = None) -> Instrument:
        """One version of an instrument; the latest when `version` is None."""
        if version is None:
            version = self.versions(instrument_id)[-1]
        instrument = self._versions.get(instrument_id, {}).get(version)
        if instrument is None:
            raise UnknownInstrumentError(instrument_id, version)
        return instrument

    def score(self, submission: Submission) -> Score:
        """Score answers against the exact instrument version they were given for.

        An unknown instrument or version is a fault of the submission, so it is reported as an
        `AnswerValidationError` (wrong_instrument / wrong_version) like any other bad answer.
        """
        if submission.instrument_id not in self._versions:
            raise AnswerValidationError([AnswerProblem(code="wrong_instrument")])
        if submission.instrument_version not in self._versions[submission.instrument_id]:
            raise AnswerValidationError([AnswerProblem(code="wrong_version")])
        return score(self.get(submission.instrument_id, submission.instrument_version), submission)


def load_files(files: Iterable[Traversable]) -> Catalogue:
    """Decode every `*.json` definition; the file name must start with the instrument id."""
    instruments = []
    for file in files:
        if not file.name.endswith(".json"):
            continue
        instrument = decode_instrument(file.read_bytes(), file.name)
        if file.name.removesuffix(".json").split("@")[0] != instrument.id:
            raise InstrumentDefinitionError(f"{file.name}: file name does not match id")
        instruments.append(instrument)
    return Catalogue(instruments)


@functools.cache
def catalogue() -> Catalogue:
    """The shipped catalogue, loaded and checked once per process."""
    return load_files(resources.files("questionnaires").joinpath("instruments").iterdir())


def list_instruments() -> list[Instrument]:
    return catalogue().instruments()


def get_instrument(instrument_id: str, version: str | None = None) -> Instrument:
    return catalogue().get(instrument_id, version)


def licence(instrument_id: str, version: str | None = None) -> Licence:
    return get_instrument(instrument_id, version).licence


def requires_licensed_text(instrument_id: str, version: str | None = None) -> bool:
    """True when the clinic must supply licensed wording before patients see the form."""
    return get_instrument(instrument_id, version).requires_licensed_text


def score_submission(submission: Submission) -> Score:
    return catalogue().score(submission)
