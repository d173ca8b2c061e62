"""`alerts.history` opens a course's responses in one batch (`history._decrypt`) and reads them
with each instrument worked out once (`history._scored`, `timeline.read_scored`). Proved here
against the plain way, one field and one response at a time as `history` read them before
(`_one_by_one`, `_rules_view`), over generated courses of every instrument of the catalogue with
real ciphertexts: the rules see exactly the same responses. And a field that does not open still
fails the whole read."""

import uuid
from datetime import timedelta
from typing import Any, NamedTuple, cast

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.crypto.envelope import generate_dek, wrap_dek
from backend.crypto.errors import DecryptionError
from backend.crypto.kek import LocalKekProvider
from backend.domain.alerts.history import (
    AnswersNeeded,
    _decrypt,
    _Decrypted,
    _reasks,
    _scored,
    answers_needed_by,
)
from backend.domain.alerts.parameters import load_parameters
from backend.domain.alerts.rows import AnyRow
from backend.domain.alerts.timeline import FreeText, ScoredResponse, UnansweredSafetyItem
from backend.keyring.service import Keyring, OwnerKeys
from questionnaires.answers import Answer, Submission
from questionnaires.errors import AnswerValidationError
from questionnaires.model import Instrument
from questionnaires.registry import catalogue
from questionnaires.scoring import Score
from tests.alerts.builders import T0, item_values

TABLE = "questionnaire_responses"
PARAMETERS = load_parameters()
WAIT = timedelta(minutes=PARAMETERS.suicidality.reask_wait_minutes)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INSTRUMENTS = sorted(catalogue().instruments(), key=lambda i: (i.id, i.version))


class StoredRow(NamedTuple):
    """The columns `history` reads of a stored response."""

    id: uuid.UUID
    authored_at: Any
    answers_ct: bytes
    score_ct: bytes


class KeyRow(NamedTuple):
    dek_version: int
    kek_id: str
    wrapped_dek: bytes
    retired_at: None = None


def _keys(patient_id: uuid.UUID) -> OwnerKeys:
    kek = LocalKekProvider.generate()
    wrapped = wrap_dek(kek, generate_dek(), patient_id=str(patient_id), dek_version=1)
    keyring = Keyring(kek)
    return keyring.keys_from_rows(
        patient_id,
        [KeyRow(1, wrapped.kek_id, wrapped.wrapped_dek)],
        generation=keyring.generation,
        active_only=True,
    )


# Blank text too: the rules read only free text with something in it.
_TEXT = st.sampled_from(["", "  ", "hopeless"]) | st.text(max_size=20)


@st.composite
def _response(draw: st.DrawFn, instrument: Instrument) -> tuple[Score, tuple[Answer, ...]] | None:
    answers = tuple(
        Answer(link_id=item.link_id, value=draw(item_values(item, _TEXT)))
        for item in instrument.items
        # Mostly answered, sometimes not: prorated and unanswered safety items come out too.
        if draw(st.integers(0, 5)) > 0
    )
    try:
        score = catalogue().score(
            Submission(
                instrument_id=instrument.id, instrument_version=instrument.version, answers=answers
            )
        )
    except AnswerValidationError:
        return None  # answers the API would refuse (e.g. an item its condition disables)
    return score, answers


@st.composite
def courses(draw: st.DrawFn, keys: OwnerKeys) -> list[StoredRow]:
    """A course's stored responses, oldest first, encrypted as the submission path stores them."""
    rows = []
    minutes = 0
    for _ in range(draw(st.integers(0, 25))):
        stored = draw(_response(draw(st.sampled_from(INSTRUMENTS))))
        if stored is None:
            continue
        score, answers = stored
        # Minutes apart, clustered so that re-ask waits pair some of them.
        minutes += draw(st.sampled_from([1, 30, 70, 1440]))
        response_id = uuid.uuid4()
        row_id = str(response_id)
        rows.append(
            StoredRow(
                id=response_id,
                authored_at=T0 + timedelta(minutes=minutes),
                answers_ct=keys.encrypt(
                    table=TABLE,
                    column="answers_ct",
                    row_id=row_id,
                    plaintext=msgspec.msgpack.encode(sorted(answers, key=lambda a: a.link_id)),
                ),
                score_ct=keys.encrypt(
                    table=TABLE,
                    column="score_ct",
                    row_id=row_id,
                    plaintext=msgspec.msgpack.encode(score),
                ),
            )
        )
    return rows


def _rules_view(
    score: Score,
    instrument: Instrument,
    *,
    response_id: str,
    authored: Any,
    answers: dict[str, bool | int | float | str],
    reask_of: str | None,
) -> ScoredResponse:
    """The rules' view of one response, everything worked out for it alone (as
    `timeline.scored_response` did before the per-instrument reading)."""
    concerns = {item.link_id: item.concern for item in instrument.safety_items}
    text_items = (
        {item.link_id for item in instrument.items if item.type == "text"}
        if instrument.respondent == "patient"
        else set()
    )
    return ScoredResponse(
        id=response_id,
        instrument_id=score.instrument_id,
        instrument_version=score.instrument_version,
        trajectory_key=score.trajectory_key,
        recall_hours=instrument.recall.hours,
        authored=authored,
        total=score.total,
        prorated=score.prorated,
        partial=bool(score.missing_items),
        answers={k: v for k, v in answers.items() if not isinstance(v, str)},
        free_text=tuple(
            FreeText(k, v)
            for k, v in sorted(answers.items())
            if k in text_items and isinstance(v, str) and v.strip()
        ),
        safety_flags=score.safety_flags,
        unanswered_safety_items=tuple(
            UnansweredSafetyItem(link_id=link_id, concern=concerns[link_id])
            for link_id in score.unanswered_safety_items
        ),
        reask_of=reask_of,
    )


def _one_by_one(
    keys: OwnerKeys, rows: list[StoredRow], answers_needed: AnswersNeeded
) -> list[ScoredResponse]:
    """The plain way: each field opened and decoded on its own, each response read on its own."""
    decrypted = []
    for row in rows:
        row_id = str(row.id)
        score = msgspec.msgpack.decode(
            keys.decrypt(table=TABLE, column="score_ct", row_id=row_id, blob=row.score_ct),
            type=Score,
        )
        answers: dict[str, bool | int | float | str] = {}
        if answers_needed(score):
            stored = msgspec.msgpack.decode(
                keys.decrypt(table=TABLE, column="answers_ct", row_id=row_id, blob=row.answers_ct),
                type=tuple[Answer, ...],
            )
            answers = {a.link_id: a.value for a in stored}
        decrypted.append(
            _Decrypted(id=row_id, authored=row.authored_at, score=score, answers=answers)
        )
    reask_of = _reasks(decrypted, WAIT)
    return [
        _rules_view(
            r.score,
            catalogue().get(r.score.instrument_id, r.score.instrument_version),
            response_id=r.id,
            authored=r.authored,
            answers=r.answers,
            reask_of=reask_of.get(r.id),
        )
        for r in decrypted
    ]


PATIENT = uuid.uuid4()
KEYS = _keys(PATIENT)
NEEDED: dict[str, AnswersNeeded] = {
    "as the rules read them": answers_needed_by(PARAMETERS),
    "all": lambda _score: True,
}


@pytest.mark.parametrize("needed", sorted(NEEDED))
@SETTINGS
@given(data=st.data())
def test_a_batch_read_gives_the_rules_exactly_what_reading_one_by_one_gives(
    needed: str, data: st.DataObject
) -> None:
    rows = data.draw(courses(KEYS))
    answers_needed = NEEDED[needed]
    batch = _scored(_decrypt(KEYS, cast(list[AnyRow], rows), answers_needed), WAIT)
    assert batch == _one_by_one(KEYS, rows, answers_needed)


@pytest.mark.parametrize("column", ["score_ct", "answers_ct"])
def test_a_field_that_does_not_open_fails_the_whole_read(column: str) -> None:
    rows = []
    for step in range(3):
        row_id = uuid.uuid4()
        answers = tuple(Answer(link_id=f"phq9-{n}", value=1) for n in range(1, 10))
        score = catalogue().score(
            Submission(instrument_id="phq9", instrument_version="1.0.0", answers=answers)
        )
        plain = {
            "score_ct": msgspec.msgpack.encode(score),
            "answers_ct": msgspec.msgpack.encode(answers),
        }
        sealed = {
            name: KEYS.encrypt(table=TABLE, column=name, row_id=str(row_id), plaintext=value)
            for name, value in plain.items()
        }
        rows.append(StoredRow(row_id, T0 + timedelta(hours=step), **sealed))
    # The middle row's field moved from the first row: bound to another row, it must not open.
    rows[1] = rows[1]._replace(**{column: getattr(rows[0], column)})
    with pytest.raises(DecryptionError):
        _decrypt(KEYS, cast(list[AnyRow], rows), lambda _score: True)
