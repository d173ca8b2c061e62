"""The columnar observations (the write pass's hot path) hold exactly the rows `deidentify`
builds one object at a time, in the same order, for every profile."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from backend.domain.exports.codebook import OBSERVATIONS
from backend.domain.exports.columnar import ObservationColumns
from backend.domain.exports.deid import (
    DeidentificationProfile,
    Pseudonymiser,
    deidentify,
    prepare_patient,
)
from backend.domain.exports.records import ItemAnswerRecord, PatientTimeline
from tests.exports.pipeline import gate
from tests.exports.synthetic import EPOCH, Identifiers, clinic


def _as_stored(timeline: PatientTimeline, index: int) -> PatientTimeline:
    """What the database holds: no course id or note on a response, no session rows (a later
    pass writes those: `SealedGroup.session_observations`); every third patient typed a
    free-text answer, and one answered before the course started."""
    responses = []
    for n, response in enumerate(timeline.responses):
        answers = response.answers
        if index % 3 == 0 and n % 2 == 0:
            answers = (*answers, ItemAnswerRecord(link_id="phq9-note", value=f"note {n}"))
        authored = EPOCH - dt.timedelta(days=2) if index == 1 and n == 0 else response.authored_at
        responses.append(
            msgspec.structs.replace(
                response, answers=answers, course_id=None, free_text=None, authored_at=authored
            )
        )
    return msgspec.structs.replace(
        timeline, responses=tuple(responses), side_effects=(), session_observations=()
    )


@pytest.mark.parametrize(
    "profile",
    [
        DeidentificationProfile(),
        DeidentificationProfile(date_shift=True),
        DeidentificationProfile(include_free_text=True),
    ],
    ids=["safe-harbor", "date-shift", "free-text"],
)
def test_columns_hold_the_rows_deidentify_builds(profile: DeidentificationProfile) -> None:
    timelines = [_as_stored(t, i) for i, t in enumerate(clinic(Identifiers()))]
    decision = gate(timelines, profile)
    pseudonymiser = Pseudonymiser(b"c" * 32)
    schema = OBSERVATIONS.schema(profile)
    expected: list[dict[str, object]] = []
    columns = ObservationColumns(profile, pseudonymiser)
    for timeline in timelines:
        context = prepare_patient(
            timeline, profile=profile, decision=decision, pseudonymiser=pseudonymiser
        )
        if context is None:
            continue
        rows = deidentify(
            timeline, profile=profile, decision=decision, pseudonymiser=pseudonymiser
        ).observations
        expected += [{name: getattr(row, name) for name in schema.names} for row in rows]
        responses = sorted(timeline.responses, key=lambda r: r.authored_at)
        columns.add_patient(
            context,
            response_ids=[r.response_id.bytes for r in responses],
            authored=[r.authored_at for r in responses],
            instrument_ids=[r.instrument_id for r in responses],
            instrument_versions=[r.instrument_version for r in responses],
            scorer_versions=[r.scorer_version for r in responses],
            answers=[r.answers for r in responses],
            scores=responses,
        )
    batch = columns.batch(schema)
    assert batch is not None
    assert batch.schema == schema
    assert batch.to_pylist() == expected
    kinds = {row["kind"] for row in expected}
    assert kinds == (
        {"item", "total", "free_text"} if profile.include_free_text else {"item", "total"}
    )
    assert columns.instruments == {("phq9", "1.0.0", "1.0.0")}


def test_no_responses_no_batch() -> None:
    columns = ObservationColumns(DeidentificationProfile(), Pseudonymiser(b"c" * 32))
    assert columns.batch(OBSERVATIONS.schema(DeidentificationProfile())) is None
