"""The columnar observations (the write pass's hot path) hold exactly the rows `deidentify`
builds one object at a time, in the same order, for every profile."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.exports.codebook import OBSERVATIONS
from backend.domain.exports.columnar import ObservationColumns, _hours, base32_ids
from backend.domain.exports.deid import (
    HOURS_DECIMALS,
    DeidentificationProfile,
    Pseudonymiser,
    base32_id,
    deidentify,
    prepare_patient,
)
from backend.domain.exports.records import ItemAnswerRecord, PatientTimeline
from backend.domain.exports.writers import ExportDescription, ExportFormats, ExportWriter
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


def test_page_base32_ids_are_base32_id_of_each_digest() -> None:
    """`base32_ids` (a page's record ids at once) gives `deid.base32_id` of every digest,
    whatever the page's size."""
    for n in (1, 2, 3, 64, 4097):
        digests = [
            hashlib.sha256(i.to_bytes(4, "big") + bytes([n % 256])).digest() for i in range(n)
        ]
        assert base32_ids(digests).to_pylist() == [base32_id(d) for d in digests]
    edges = [b"\x00" * 32, b"\xff" * 32, bytes(range(32)), bytes(range(255, 223, -1))]
    assert base32_ids(edges).to_pylist() == [base32_id(d) for d in edges]
    assert base32_ids([]).to_pylist() == []
    with pytest.raises(ValueError, match="digests"):
        base32_ids([b"\x00" * 31, b"\x00" * 33])


@given(st.lists(st.integers(min_value=-(10**13), max_value=10**13) | st.none(), max_size=50))
def test_hours_round_as_python_rounds(microseconds: list[int | None]) -> None:
    """Arrow's rounding of the page's hours equals `round(total_seconds / 3600, 2)` on every
    value, ties and near-ties included (multiples of 18 s are exact halves of 0.01 h)."""
    ties = [k * 18_000_000 for k in range(-40, 41)] + [k * 18_000_000 + 1 for k in range(-5, 5)]
    values = microseconds + ties
    expected = [
        None
        if d is None
        else round(dt.timedelta(microseconds=d).total_seconds() / 3600, HOURS_DECIMALS)
        for d in values
    ]
    assert _hours(pa.array(values, pa.int64())).to_pylist() == expected


def test_responses_out_of_time_order_are_placed_one_by_one() -> None:
    """`add_patient` expects a patient's responses in time order (as `source` reads them); in
    any other order each is still placed where `deid` places it."""
    profile = DeidentificationProfile()
    timelines = [_as_stored(t, i) for i, t in enumerate(clinic(Identifiers()))]
    decision = gate(timelines, profile)
    pseudonymiser = Pseudonymiser(b"c" * 32)
    schema = OBSERVATIONS.schema(profile)
    for timeline in timelines:
        context = prepare_patient(
            timeline, profile=profile, decision=decision, pseudonymiser=pseudonymiser
        )
        if context is None or len(timeline.responses) < 2:
            continue
        batches = []
        for order in (1, -1):
            responses = sorted(timeline.responses, key=lambda r: r.authored_at)[::order]
            columns = ObservationColumns(profile, pseudonymiser)
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
            batches.append(sorted(batch.to_pylist(), key=lambda row: str(sorted(row.items()))))
        assert batches[0] == batches[1]
        return
    raise AssertionError("no patient with two responses")


def _write_clinic_observations(directory: Path) -> pa.RecordBatch:
    """The synthetic clinic's observations written through `ExportWriter` into `directory`."""
    profile = DeidentificationProfile()
    timelines = [_as_stored(t, i) for i, t in enumerate(clinic(Identifiers()))]
    decision = gate(timelines, profile)
    pseudonymiser = Pseudonymiser(b"c" * 32)
    columns = ObservationColumns(profile, pseudonymiser)
    for timeline in timelines:
        context = prepare_patient(
            timeline, profile=profile, decision=decision, pseudonymiser=pseudonymiser
        )
        if context is None:
            continue
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
    description = ExportDescription(
        name="stats", profile=profile, k_anonymity=decision.report, software_version="test"
    )
    with ExportWriter(
        directory, description, formats=ExportFormats(parquet=True, csv=False)
    ) as writer:
        batch = columns.batch(writer.observations_schema)
        assert batch is not None
        writer.write_observations(batch, columns.instruments)
        writer.finish()
    return batch


def test_parquet_keeps_statistics_where_they_prune(tmp_path: Path) -> None:
    """Observation row groups carry min/max for the study id and the numbers and times (what
    readers filter on), not for random record ids or strings every row group holds."""
    _write_clinic_observations(tmp_path / "bundle")
    metadata = pq.ParquetFile(tmp_path / "bundle" / "parquet" / "observations.parquet").metadata
    group = metadata.row_group(0)
    with_stats = {
        group.column(i).path_in_schema
        for i in range(group.num_columns)
        if group.column(i).is_stats_set
    }
    assert {"study_id", "value", "hours_since_course_start", "session_index"} <= with_stats
    assert not {"record_id", "variable", "kind"} & with_stats


def test_parquet_record_ids_are_written_plain_and_read_back_the_same(tmp_path: Path) -> None:
    """A record id is its response's alone, so its column has no dictionary (which would hold
    nearly every value); the other strings keep theirs. The values read back are the rows."""
    batch = _write_clinic_observations(tmp_path / "bundle")
    path = tmp_path / "bundle" / "parquet" / "observations.parquet"
    group = pq.ParquetFile(path).metadata.row_group(0)
    dictionary = {
        group.column(i).path_in_schema
        for i in range(group.num_columns)
        if group.column(i).has_dictionary_page
    }
    assert "record_id" not in dictionary
    assert {"study_id", "kind", "variable", "instrument_id"} <= dictionary
    assert pq.read_table(path) == pa.Table.from_batches([batch])
