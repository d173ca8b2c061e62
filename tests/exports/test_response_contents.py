"""What a stored response carries into an export, on both databases, through the API and the
write pass's columns: whether its total is partial (clinical-spec §2.4), and the patient's free
text only when a clinic admin opted in to it."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import polars as pl
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from backend.db.models.questionnaire_response import QuestionnaireResponse as ResponseRow
from backend.domain.responses.schemas import ResponseSubmission
from backend.domain.responses.service import PatientRef, submit_response
from questionnaires.answers import Answer
from tests.exports.world import COURSE_START, KnownPatient, build_world, export_and_download
from tests.identity.conftest import MovableClock, StaffAccount, runtime_of


async def _submit_phq9(
    api: AsyncTestClient[Litestar],
    clock: MovableClock,
    clinician: StaffAccount,
    known: KnownPatient,
    values: dict[int, int],
    *,
    days_after_start: int,
    text: str | None = None,
) -> None:
    """A PHQ-9 with the items of `values` answered (the others left out), stored by the
    responses service as the app would submit it; with `text`, its answers then re-sealed with
    a free-text answer added, as a text item is stored (none of the shipped instruments has one
    yet, so the service would refuse it)."""
    runtime = runtime_of(api)
    assert clinician.clinic_id is not None
    authored = COURSE_START + timedelta(days=days_after_start, hours=3)
    async with runtime.require_sessionmaker()() as session:
        result = await submit_response(
            session,
            runtime.keyring,
            patient=PatientRef(patient_id=known.id, clinic_id=clinician.clinic_id),
            submission=ResponseSubmission(
                instrument_id="phq9",
                instrument_version="1.0.0",
                answers=tuple(Answer(link_id=f"phq9-{i}", value=v) for i, v in values.items()),
                authored=authored,
            ),
            idempotency_key=None,
            now=clock.now(),
        )
        if text is not None:
            answers = [
                *(Answer(link_id=f"phq9-{i}", value=v) for i, v in values.items()),
                Answer(link_id=FREE_TEXT_ITEM, value=text),
            ]
            keys = await runtime.keyring.owner_keys(session, known.id, active_only=True)
            sealed = keys.encrypt(
                table="questionnaire_responses",
                column="answers_ct",
                row_id=str(result.response_id),
                plaintext=msgspec.msgpack.encode(sorted(answers, key=lambda a: a.link_id)),
            )
            connection = await session.connection()
            await connection.execute(
                update(ResponseRow)
                .where(ResponseRow.id == result.response_id)  # type: ignore[arg-type]
                .values(answers_ct=sealed)
            )
        await session.commit()
    known.timestamps.append(authored)
    known.record_ids.append(result.response_id)


FREE_TEXT_ITEM = "phq9-comment"


def _extensions(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        e["url"].rsplit(":", 1)[1]: next(v for k, v in e.items() if k.startswith("value"))
        for e in resource.get("extension", ())
    }


async def test_a_partial_total_is_marked_in_parquet_csv_and_fhir(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    clinician = world.staff["clinician_a"]
    prorated, without_total = world.consenting[0], world.consenting[1]
    # Item 8 skipped: prorated to 9 (the mean of the eight answered items, 1, times nine);
    # item 9 skipped: a safety item is never imputed, so no total at all.
    answered = dict.fromkeys(range(1, 10), 1)
    await _submit_phq9(
        api,
        clock,
        clinician,
        prorated,
        {i: v for i, v in answered.items() if i != 8},
        days_after_start=20,
    )
    await _submit_phq9(
        api,
        clock,
        clinician,
        without_total,
        {i: v for i, v in answered.items() if i != 9},
        days_after_start=20,
    )
    _, bundle = await export_and_download(
        api,
        world.staff["researcher_a"],
        tmp_path / "bundle",
        formats=["parquet", "csv", "fhir_ndjson"],
    )
    parquet = str(bundle / "parquet" / "observations.parquet")
    frame = pl.read_parquet(parquet)
    assert frame.schema["score_partial"] == pl.Boolean
    assert frame.schema["n_missing_items"] == pl.Int32
    totals = frame.filter(pl.col("kind") == "total")
    marks = totals.group_by("score_partial", "n_missing_items", "prorated").len()
    assert sorted(marks.rows()) == [
        (False, 0, False, 6 * 3),  # the world's complete PHQ-9s
        (True, 1, False, 1),
        (True, 1, True, 1),
    ]
    assert (
        frame.filter(pl.col("kind") == "item")["score_partial"].null_count()
        == frame.filter(pl.col("kind") == "item").height
    )
    relation = duckdb.sql(
        f"SELECT value, typeof(score_partial), typeof(n_missing_items) FROM '{parquet}' "
        "WHERE kind = 'total' AND score_partial ORDER BY prorated"
    )
    assert relation is not None
    assert relation.fetchall() == [(None, "BOOLEAN", "INTEGER"), (9.0, "BOOLEAN", "INTEGER")]
    csv = pl.read_csv(bundle / "csv" / "observations.csv").filter(pl.col("kind") == "total")
    assert csv["score_partial"].to_list() == totals["score_partial"].to_list()
    assert csv["n_missing_items"].to_list() == totals["n_missing_items"].to_list()
    fhir_totals = []
    for line in (bundle / "fhir" / "Observation.ndjson").read_text().splitlines():
        Observation.model_validate_json(line)
        if '"derivedFrom"' in line:
            fhir_totals.append(Observation.model_validate_json(line).model_dump(mode="json"))
    partial = [_extensions(t) for t in fhir_totals if _extensions(t)["score-partial"]]
    assert [(p["missing-items"], p["score-prorated"]) for p in partial] == [(1, True)]
    assert len(fhir_totals) == 6 * 3 + 1  # no total, no Observation


async def test_a_patients_free_text_leaves_only_with_the_opt_in(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    known = world.consenting[2]
    text = f"Told {known.name} I feel better, call me on {known.phone}"
    await _submit_phq9(
        api,
        clock,
        world.staff["clinician_a"],
        known,
        dict.fromkeys(range(1, 10), 1),
        days_after_start=20,
        text=text,
    )
    formats = ["parquet", "csv", "fhir_ndjson"]
    _, default = await export_and_download(
        api, world.staff["admin_a"], tmp_path / "default", formats=formats
    )
    # Not in any byte of any file, nor in a decoded (compressed) Parquet value.
    for path in (p for p in default.rglob("*") if p.is_file()):
        content = path.read_bytes().lower()
        for value in (text, known.name, known.phone, FREE_TEXT_ITEM):
            assert value.lower().encode() not in content, (path.name, value)
    frame = pl.read_parquet(default / "parquet" / "observations.parquet")
    assert "value_text" not in frame.columns
    assert frame.filter(pl.col("kind") == "free_text").height == 0
    job, opted = await export_and_download(
        api,
        world.staff["admin_a"],
        tmp_path / "opted",
        formats=formats,
        include_free_text=True,
    )
    assert job["classification"] == "requires_review"
    # The patient's (a response's, with its instrument); the clinicians' side-effect notes too.
    patients = (pl.col("kind") == "free_text") & pl.col("instrument_id").is_not_null()
    frame = pl.read_parquet(opted / "parquet" / "observations.parquet")
    texts = frame.filter(patients)
    assert texts.select("instrument_id", "variable", "value_text").rows() == [
        ("phq9", FREE_TEXT_ITEM, text)
    ]
    csv = pl.read_csv(opted / "csv" / "observations.csv").filter(patients)
    assert csv["value_text"].to_list() == [text]
    answered = []
    for line in (opted / "fhir" / "QuestionnaireResponse.ndjson").read_text().splitlines():
        QuestionnaireResponse.model_validate_json(line)
        for item in json.loads(line).get("item", ()):
            if item["linkId"] == FREE_TEXT_ITEM:
                answered.append(item["answer"])
    assert answered == [[{"valueString": text}]]
    assert "CONTAINS FREE TEXT" in (opted / "README.md").read_text()
