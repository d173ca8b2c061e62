"""Export jobs end to end, on both databases: request through the API, run by the app's timers,
download once; what the bundle holds and, above all, what it does not."""

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.keyring.service import DATA_KEYS
from tests.exports.world import (
    RESPONSES_PER_PATIENT,
    ROWS_PER_PHQ9,
    SESSION_ROWS_PER_PATIENT,
    ExportWorld,
    build_world,
    export_and_download,
    request_export,
    unpack,
    wait_for,
)
from tests.identity.conftest import MovableClock, runtime_of

FHIR_MODELS: dict[str, Any] = {
    "Patient": Patient,
    "Observation": Observation,
    "QuestionnaireResponse": QuestionnaireResponse,
    "MedicationAdministration": MedicationAdministration,
    "Flag": Flag,
}


def _sql(query: str) -> list[tuple[Any, ...]]:
    relation = duckdb.sql(query)
    assert relation is not None
    return relation.fetchall()


def _study_ids(bundle: Path) -> set[str]:
    return set(
        pq.read_table(bundle / "parquet" / "patients.parquet").column("study_id").to_pylist()
    )


def _all_cells(bundle: Path) -> list[str]:
    cells: list[str] = []
    for path in (bundle / "parquet").glob("*.parquet"):
        for column in pq.read_table(path).columns:
            cells += [str(value) for value in column.to_pylist()]
    return cells


async def test_export_bundle_carries_no_identifying_value_in_any_byte(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    job, bundle = await export_and_download(
        api,
        world.staff["researcher_a"],
        tmp_path / "bundle",
        formats=["parquet", "csv", "fhir_ndjson"],
    )
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    assert {p.relative_to(bundle).as_posix() for p in files} >= {
        "parquet/patients.parquet",
        "parquet/observations.parquet",
        "parquet/sessions.parquet",
        "csv/observations.csv",
        "fhir/Patient.ndjson",
        "fhir/QuestionnaireResponse.ndjson",
        "fhir/Flag.ndjson",
        "parquet/alerts.parquet",
        "csv/alerts.csv",
        "datapackage.json",
        "README.md",
        "MANIFEST.sha256",
    }
    texts = [s for p in world.patients + world.b_patients for s in p.identifying_strings()]
    binaries = [b for p in world.patients + world.b_patients for b in p.identifying_bytes()]
    cells = "\n".join(_all_cells(bundle))
    for path in files:
        content = path.read_bytes()
        lowered = content.lower()
        for value in texts:
            assert value.lower().encode() not in lowered, (path.name, value)
        for blob in binaries:
            assert blob not in content, (path.name, blob.hex())
    for value in texts:  # Parquet pages are compressed: look at the decoded values too
        assert value not in cells, value
    # Without a date shift no column holds a calendar time at all.
    for path in (bundle / "parquet").glob("*.parquet"):
        schema = pq.read_schema(path)
        assert not any(str(f.type).startswith(("timestamp", "date")) for f in schema), path.name
    assert job["k_achieved"] >= 5
    assert job["classification"] == "safe_harbor"


async def test_only_consenting_patients_and_all_their_rows_are_exported(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    job, bundle = await export_and_download(
        api, world.staff["researcher_a"], tmp_path / "b", archive="tar"
    )
    consenting = len(world.consenting)
    assert len(_study_ids(bundle)) == consenting == 6
    observations = pq.read_table(bundle / "parquet" / "observations.parquet")
    assert observations.num_rows == consenting * (
        RESPONSES_PER_PATIENT * ROWS_PER_PHQ9 + SESSION_ROWS_PER_PATIENT
    )
    assert set(observations.column("study_id").to_pylist()) == _study_ids(bundle)
    sessions = pq.read_table(bundle / "parquet" / "sessions.parquet").to_pylist()
    assert len(sessions) == consenting * 2
    assert {(s["session_index"], s["hours_since_course_start"]) for s in sessions} == {
        (1, 0.0),
        (2, 48.0),
    }
    totals = [r for r in observations.to_pylist() if r["kind"] == "total"]
    # Two hours after session 1, then a day apart: treatment-relative time, never a date.
    assert sorted({(r["session_index"], r["day_since_course_start"]) for r in totals}) == [
        (1, 0),
        (1, 1),
        (2, 2),
    ]
    assert {r["value"] for r in totals} == {12.0}
    alerts = pq.read_table(bundle / "parquet" / "alerts.parquet").to_pylist()
    assert len(alerts) == consenting
    assert {
        (a["kind"], a["severity"], a["rule_id"], a["rule_version"], a["status"]) for a in alerts
    } == {("SEVERE_SCORE", "high", "severe-score", "interlude-core@1.0.0", "resolved")}
    # Two days and five hours into the course, three hours after session 2; resolved in 26 h.
    assert {(a["session_index"], a["day_since_course_start"]) for a in alerts} == {(2, 2)}
    assert {round(a["hours_since_session"]) for a in alerts} == {5}
    assert {a["hours_to_resolved"] for a in alerts} == {26.0}
    package = json.loads((bundle / "datapackage.json").read_text())
    assert {"id": "severe-score", "version": "interlude-core@1.0.0"} in package["rules"]
    with (bundle / "csv" / "patients.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == consenting
    manifest = (bundle / "MANIFEST.sha256").read_text().splitlines()
    assert len(manifest) == len([p for p in bundle.rglob("*") if p.is_file()]) - 1
    assert job["rows"] == sum(
        pq.read_metadata(p).num_rows for p in (bundle / "parquet").glob("*.parquet")
    )
    assert job["percent"] == 100


async def test_parquet_opens_in_duckdb_and_polars_and_ndjson_validates(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    _job, bundle = await export_and_download(
        api,
        world.staff["researcher_a"],
        tmp_path / "b",
        formats=["parquet", "fhir_ndjson"],
    )
    observations = bundle / "parquet" / "observations.parquet"
    patients = bundle / "parquet" / "patients.parquet"
    described = _sql(f"DESCRIBE SELECT * FROM '{observations}'")
    types = {row[0]: row[1] for row in described}
    assert types["study_id"] == "VARCHAR"
    assert types["value"] == "DOUBLE"
    assert types["course_index"] == "INTEGER"
    assert types["prorated"] == "BOOLEAN"
    count = _sql(f"SELECT count(*) FROM '{observations}' WHERE kind = 'total'")[0]
    assert count == (len(world.consenting) * RESPONSES_PER_PATIENT,)
    frame = pl.read_parquet(patients)
    assert frame.schema["study_id"] == pl.String
    assert frame.schema["first_treatment_year"] == pl.Int16
    assert frame.schema["n_sessions"] == pl.Int32
    assert frame["age_band"].to_list() == ["40-44"] * len(world.consenting)
    assert pl.read_parquet(observations).schema["hours_since_session"] == pl.Float64
    seen: dict[str, int] = {}
    for path in sorted((bundle / "fhir").glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            FHIR_MODELS[path.stem].model_validate_json(line)
            seen[path.stem] = seen.get(path.stem, 0) + 1
    assert seen["Patient"] == len(world.consenting)
    assert seen["QuestionnaireResponse"] == len(world.consenting) * RESPONSES_PER_PATIENT
    assert seen["MedicationAdministration"] == len(world.consenting) * 2
    assert seen["Flag"] == len(world.consenting)


async def test_stable_study_ids_repeat_and_per_export_ids_do_not(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    admin = world.staff["admin_a"]
    study = await api.post(
        "/api/v1/exports/studies",
        headers=admin.headers,
        json={"name": "rapid-relief", "stable_ids": True},
    )
    assert study.status_code == 201, study.text
    study_id = study.json()["id"]
    researcher = world.staff["researcher_a"]
    first = [
        _study_ids((await export_and_download(api, researcher, tmp_path / f"s{i}",
                                              study_id=study_id))[1])
        for i in range(2)
    ]  # fmt: skip
    assert first[0] == first[1]
    assert len(first[0]) == len(world.consenting)
    plain = [
        _study_ids((await export_and_download(api, researcher, tmp_path / f"p{i}"))[1])
        for i in range(2)
    ]
    assert len(plain[0]) == len(plain[1]) == len(world.consenting)
    assert not plain[0] & plain[1]
    assert not plain[0] & first[0]
    # A study without stable ids behaves like a plain export.
    loose = await api.post(
        "/api/v1/exports/studies", headers=admin.headers, json={"name": "loose-ids"}
    )
    loose_ids = [
        _study_ids((await export_and_download(api, researcher, tmp_path / f"l{i}",
                                              study_id=loose.json()["id"]))[1])
        for i in range(2)
    ]  # fmt: skip
    assert not loose_ids[0] & loose_ids[1]


async def test_download_once_by_the_requester_then_gone(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    researcher = world.staff["researcher_a"]
    job = await request_export(api, researcher)
    done = await wait_for(api, researcher, job["id"])
    assert done["state"] == "done"
    url = f"/api/v1/exports/{job['id']}/download"
    colleague = await api.get(url, headers=world.staff["researcher_a2"].headers)
    assert colleague.status_code == 404
    admin_view = await api.get(
        f"/api/v1/exports/{job['id']}", headers=world.staff["admin_a"].headers
    )
    assert admin_view.status_code == 200
    admin_download = await api.get(url, headers=world.staff["admin_a"].headers)
    assert admin_download.status_code == 403
    first = await api.get(url, headers=researcher.headers)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/zip")
    bundle = unpack(first.content, "zip", tmp_path / "once")
    assert (bundle / "MANIFEST.sha256").exists()
    second = await api.get(url, headers=researcher.headers)
    assert second.status_code == 410
    assert second.json()["type"].endswith("export-gone")
    after = await wait_for(api, researcher, job["id"], frozenset({"downloaded"}))
    assert after["downloaded_at"] is not None


async def test_another_clinic_cannot_see_request_or_download(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await build_world(api, clock)
    admin = world.staff["admin_a"]
    study = await api.post(
        "/api/v1/exports/studies", headers=admin.headers, json={"name": "clinic-a-only"}
    )
    job = await request_export(api, world.staff["researcher_a"])
    outsider = world.staff["researcher_b"]
    assert (
        await api.get(f"/api/v1/exports/{job['id']}", headers=outsider.headers)
    ).status_code == 404
    download = await api.get(f"/api/v1/exports/{job['id']}/download", headers=outsider.headers)
    assert download.status_code == 404
    refused = await api.post(
        "/api/v1/exports", headers=outsider.headers, json={"study_id": study.json()["id"]}
    )
    assert refused.status_code == 404
    clinician = await api.post(
        "/api/v1/exports", headers=world.staff["clinician_a"].headers, json={}
    )
    assert clinician.status_code == 403
    shifted = await api.post(
        "/api/v1/exports", headers=world.staff["researcher_a"].headers, json={"date_shift": True}
    )
    assert shifted.status_code == 403


async def test_a_cohort_below_k_is_refused_with_the_reason(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await build_world(api, clock)
    researcher = world.staff["researcher_b"]
    job = await request_export(api, researcher)
    refused = await wait_for(api, researcher, job["id"])
    assert refused["state"] == "refused"
    assert refused["refusal_reason"] == (
        f"the cohort has {len(world.b_patients)} consenting patients, fewer than k = 5"
    )
    download = await api.get(f"/api/v1/exports/{job['id']}/download", headers=researcher.headers)
    assert download.status_code == 409
    assert "fewer than k = 5" in download.json()["detail"]


async def test_a_joined_study_exports_both_clinics(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world: ExportWorld = await build_world(api, clock)
    study = await api.post(
        "/api/v1/exports/studies", headers=world.staff["admin_a"].headers,
        json={"name": "two-sites"},
    )  # fmt: skip
    invited = await api.post(
        f"/api/v1/exports/studies/{study.json()['id']}/invitations",
        headers=world.staff["admin_a"].headers,
        json={"clinic_id": str(world.clinic_b)},
    )
    assert invited.status_code == 201, invited.text
    joined = await api.post(
        f"/api/v1/exports/studies/{study.json()['id']}/clinics",
        headers=world.staff["admin_b"].headers,
    )
    assert joined.status_code == 200, joined.text
    assert len(joined.json()["clinic_ids"]) == 2
    _job, bundle = await export_and_download(
        api, world.staff["researcher_b"], tmp_path / "two", study_id=study.json()["id"]
    )
    # Clinic B's three patients differ from A's only by clinic: still one class of nine.
    assert len(_study_ids(bundle)) == len(world.consenting) + len(world.b_patients)
    package = json.loads((bundle / "datapackage.json").read_text())
    assert package["name"] == "two-sites"


async def test_every_finished_job_destroys_its_own_pseudonym_key(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    admin = world.staff["admin_a"]
    researcher = world.staff["researcher_a"]
    loose = await api.post(
        "/api/v1/exports/studies", headers=admin.headers, json={"name": "loose-keys"}
    )
    stable = await api.post(
        "/api/v1/exports/studies",
        headers=admin.headers,
        json={"name": "stable-keys", "stable_ids": True},
    )
    jobs = {
        label: (await export_and_download(api, researcher, tmp_path / label, **body))[0]
        for label, body in (
            ("plain", {}),
            ("loose", {"study_id": loose.json()["id"]}),
            ("stable", {"study_id": stable.json()["id"]}),
        )
    }
    keys = DATA_KEYS.c
    async with runtime_of(api).require_sessionmaker()() as session:
        connection = await session.connection()

        async def destroyed(owner: str) -> list[bool]:
            rows = await connection.execute(
                select(keys.destroyed_at).where(keys.owner_id == uuid.UUID(owner))
            )
            return [row.destroyed_at is not None for row in rows.all()]

        # A study without stable ids used the job's own key: destroying it is what makes its
        # pseudonyms unlinkable, as for a plain export. A stable-id study's key stays.
        for label, job in jobs.items():
            assert await destroyed(job["id"]) == [True], label
        assert await destroyed(stable.json()["id"]) == [False]
