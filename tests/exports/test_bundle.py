"""The whole bundle from a synthetic clinic: nothing identifying in any byte of any file, typed
Parquet, valid FHIR, a codebook that matches the files, and a checksum manifest that holds."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from backend.domain.exports.codebook import TABLES
from backend.domain.exports.deid import DeidentificationProfile, Pseudonymiser
from backend.domain.exports.fhir import PATIENT_NOTE
from backend.domain.exports.writers import MANIFEST, ExportFormats
from tests.exports.pipeline import run_export
from tests.exports.synthetic import Identifiers, clinic

FHIR_MODELS: dict[str, Any] = {
    "Patient": Patient,
    "QuestionnaireResponse": QuestionnaireResponse,
    "Observation": Observation,
    "MedicationAdministration": MedicationAdministration,
    "Flag": Flag,
}
PARTIAL_PATIENTS = 8
"""Patients 1, 6, ..., 36 of the synthetic clinic skipped item 8 of one PHQ-9 and item 9 of
another (`synthetic.PARTIAL_SKIPS`)."""
ISO_DATE = re.compile(rb"\d{4}-\d{2}-\d{2}")
SLASH_DATE = re.compile(rb"\b\d{1,2}/\d{1,2}/\d{4}\b")


def _all_bytes(directory: Path) -> dict[str, bytes]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file()
    }


def _instant_forms(at: dt.datetime) -> list[bytes]:
    forms = [
        at.isoformat(),
        at.isoformat().replace("+00:00", "Z"),
        at.strftime("%Y-%m-%d %H:%M"),
        at.strftime("%Y-%m-%dT%H:%M"),
        at.strftime("%Y%m%d%H%M"),
        str(int(at.timestamp())),
    ]
    seconds = int(at.timestamp())
    packed = [struct.pack("<q", seconds * factor) for factor in (1, 1000, 10**6, 10**9)]
    return [f.encode() for f in forms] + packed


def _date_forms(day: dt.date) -> list[bytes]:
    return [day.strftime(fmt).encode() for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%Y%m%d")]


@pytest.fixture(scope="module")
def synthetic_clinic() -> tuple[Identifiers, list[Any]]:
    identifiers = Identifiers()
    return identifiers, clinic(identifiers)


@pytest.fixture(scope="module")
def identifiers(synthetic_clinic: tuple[Identifiers, list[Any]]) -> Identifiers:
    return synthetic_clinic[0]


@pytest.fixture(scope="module")
def timelines(synthetic_clinic: tuple[Identifiers, list[Any]]) -> list[Any]:
    return synthetic_clinic[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, timelines: list[Any]) -> Path:
    # Uncompressed, so that a byte search of the Parquet files sees every stored value.
    directory = tmp_path_factory.mktemp("export") / "bundle"
    run_export(timelines, directory, key=secrets.token_bytes(32), compression="none")
    return directory


def test_the_synthetic_clinic_really_carries_identifiers(identifiers: Identifiers) -> None:
    assert len(identifiers.strings) > 400
    assert len(identifiers.instants) > 700
    assert any("Perpetua" in s and "Wigglesworth" in s for s in identifiers.strings)


def test_no_identifying_value_appears_in_any_byte_of_any_file(
    bundle: Path, identifiers: Identifiers
) -> None:
    files = _all_bytes(bundle)
    assert {"README.md", "datapackage.json", MANIFEST} <= set(files)
    assert any(name.startswith("parquet/") for name in files)
    assert any(name.startswith("fhir/") for name in files)
    for name, data in files.items():
        lowered = data.lower()
        for value in identifiers.strings:
            assert value.lower().encode() not in lowered, (name, "identifying string")
        for word in (b"perpetua", b"wigglesworth", b"example-clinic", b"203.0.113"):
            assert word not in lowered, (name, word)
        # A record number's prefix and digits: a pseudonym ending in "mrn" before "-total" (a
        # total Observation's id) or "-c1" (a session's) is not one.
        assert re.search(rb"mrn-\d", lowered) is None, (name, "record number")
        for internal in identifiers.uuids:
            for form in (str(internal).encode(), internal.hex.encode(), internal.bytes):
                assert form not in data, (name, "internal id")
        for at in identifiers.instants:
            for form in _instant_forms(at):
                assert form not in data, (name, "exact timestamp")
        for day in identifiers.dates:
            for form in _date_forms(day):
                assert form not in data, (name, "date of birth")
        assert ISO_DATE.search(data) is None, (name, "a calendar date")
        assert SLASH_DATE.search(data) is None, (name, "a calendar date")


def test_with_the_free_text_opt_in_the_notes_leave_in_every_format(
    tmp_path: Path, timelines: list[Any]
) -> None:
    """The other side of the test above: with a clinic admin's opt-in the patients' notes on
    their responses and the clinicians' side-effect notes are in the Parquet, the CSV and the
    FHIR files (and the bundle says it needs review); without it, in no byte."""
    profile = DeidentificationProfile(include_free_text=True)
    run_export(timelines, tmp_path / "text", key=secrets.token_bytes(32), profile=profile)
    exported = timelines[:40]  # not the non-consenting patient, nor the one left out for k
    patient_notes = {r.free_text for t in exported for r in t.responses}
    clinician_notes = {s.note for t in exported for s in t.side_effects}
    assert len(patient_notes) == len(clinician_notes) == 40
    for table in (
        pq.read_table(tmp_path / "text" / "parquet" / "observations.parquet"),
        pa_csv.read_csv(tmp_path / "text" / "csv" / "observations.csv"),
    ):
        texts = [r for r in table.to_pylist() if r["kind"] == "free_text"]
        # (An empty cell of the CSV reads as "", of the Parquet as None.)
        responses = [r for r in texts if r["instrument_id"]]
        assert len(responses) == 40 * 4 * 2
        assert {r["value_text"] for r in responses} == patient_notes
        assert {r["value_text"] for r in texts if not r["instrument_id"]} == clinician_notes
    fhir = tmp_path / "text" / "fhir"
    notes: list[str] = []
    for line in (fhir / "QuestionnaireResponse.ndjson").read_text().splitlines():
        QuestionnaireResponse.model_validate_json(line)
        resource = json.loads(line)
        notes += [e["valueString"] for e in resource["extension"] if e["url"] == PATIENT_NOTE]
        assert all(item["linkId"] != "note" for item in resource.get("item", ()))
    assert len(notes) == 40 * 4 * 2
    assert set(notes) == patient_notes
    side_effect_notes = {
        note["text"]
        for line in (fhir / "Observation.ndjson").read_text().splitlines()
        for note in json.loads(line).get("note", ())
    }
    assert side_effect_notes == clinician_notes
    assert "CONTAINS FREE TEXT" in (tmp_path / "text" / "README.md").read_text()


def test_the_non_consenting_patient_and_the_rare_flag_patient_are_left_out(bundle: Path) -> None:
    patients = pq.read_table(bundle / "parquet" / "patients.parquet")
    assert patients.num_rows == 40
    assert set(patients.column("rare_flags").to_pylist()) == {""}


def test_parquet_files_open_with_pyarrow_with_the_codebook_types(bundle: Path) -> None:
    profile = DeidentificationProfile()
    for table in TABLES:
        read = pq.read_table(bundle / "parquet" / f"{table.name}.parquet")
        assert read.schema.remove_metadata() == table.schema(profile)
    observations = pq.read_table(bundle / "parquet" / "observations.parquet")
    assert observations.schema.field("value").type == pa.float64()
    assert observations.schema.field("session_index").type == pa.int32()
    assert observations.schema.field("prorated").type == pa.bool_()
    assert "value_text" not in observations.schema.names
    assert "shifted_time" not in observations.schema.names
    totals = observations.filter(pa.compute.equal(observations.column("kind"), "total"))
    assert totals.num_rows == 40 * 4 * 2
    values = totals.column("value").to_pylist()
    assert values.count(None) == PARTIAL_PATIENTS, "no total without item 9 (never imputed)"
    assert all(0 <= v <= 27 for v in values if v is not None)
    assert observations.schema.field("score_partial").type == pa.bool_()
    assert observations.schema.field("n_missing_items").type == pa.int32()
    patients = pq.read_table(bundle / "parquet" / "patients.parquet")
    assert patients.schema.field("first_treatment_year").type == pa.int16()
    assert set(patients.column("first_treatment_year").to_pylist()) == {2025}


def test_csv_holds_the_same_rows_as_parquet(bundle: Path) -> None:
    for table in TABLES:
        csv = pa_csv.read_csv(bundle / "csv" / f"{table.name}.csv")
        parquet = pq.read_table(bundle / "parquet" / f"{table.name}.parquet")
        assert csv.num_rows == parquet.num_rows
        assert csv.column_names == parquet.column_names
        assert csv.column("study_id").to_pylist() == parquet.column("study_id").to_pylist()


def test_every_ndjson_line_validates_with_fhir_resources(bundle: Path) -> None:
    seen: dict[str, int] = {}
    for path in sorted((bundle / "fhir").glob("*.ndjson")):
        model = FHIR_MODELS[path.stem]
        ids = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            resource = json.loads(line)
            assert resource["resourceType"] == path.stem
            model.model_validate(resource)
            ids.add(resource["id"])
            seen[path.stem] = seen.get(path.stem, 0) + 1
        assert len(ids) == seen[path.stem], "resource ids are unique per type"
    assert seen == {
        "Patient": 40,
        "MedicationAdministration": 160,
        "QuestionnaireResponse": 320,
        # Totals (not the partial patients' ones without item 9), side effects, and per
        # session a blood pressure and a MOAA/S rating.
        "Observation": 320 - PARTIAL_PATIENTS + 160 + 160 * 2,
        "Flag": 6,  # the exported patients with a SUICIDALITY alert
    }


def test_phq9_totals_are_observations_with_the_loinc_total_code(bundle: Path) -> None:
    lines = (bundle / "fhir" / "Observation.ndjson").read_text().splitlines()
    totals = [json.loads(x) for x in lines if '"derivedFrom"' in x]
    assert len(totals) == 320 - PARTIAL_PATIENTS
    for total in totals:
        assert total["code"]["coding"][0] == {"system": "http://loinc.org", "code": "44261-6"}
        assert 0 <= total["valueInteger"] <= 27
        assert total["derivedFrom"][0]["reference"].startswith("QuestionnaireResponse/")


def _extensions(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        e["url"].rsplit(":", 1)[1]: next(v for k, v in e.items() if k.startswith("value"))
        for e in resource.get("extension", ())
    }


def test_a_total_scored_with_items_missing_is_marked_partial_in_every_format(
    bundle: Path,
) -> None:
    """A researcher can tell a partial total from a complete one (clinical-spec §2.4): a
    prorated total (item 8 skipped), and a response without a total (item 9, never imputed),
    are partial with one item missing; every other total is complete; item rows say nothing."""
    parquet = pq.read_table(bundle / "parquet" / "observations.parquet").to_pylist()
    csv = pa_csv.read_csv(bundle / "csv" / "observations.csv").to_pylist()
    for rows in (parquet, csv):
        totals = [r for r in rows if r["kind"] == "total"]
        marks = Counter((r["score_partial"], r["n_missing_items"], r["prorated"]) for r in totals)
        assert marks == {
            (False, 0, False): 320 - 2 * PARTIAL_PATIENTS,
            (True, 1, True): PARTIAL_PATIENTS,
            (True, 1, False): PARTIAL_PATIENTS,
        }
        assert all(r["value"] is None for r in totals if r["score_partial"] and not r["prorated"])
        items = [r for r in rows if r["kind"] == "item"]
        assert {(r["score_partial"], r["n_missing_items"]) for r in items} == {(None, None)}
    lines = (bundle / "fhir" / "Observation.ndjson").read_text().splitlines()
    totals = [json.loads(x) for x in lines if '"derivedFrom"' in x]
    fhir_marks = Counter(
        (found["score-partial"], found["missing-items"], found["score-prorated"])
        for found in map(_extensions, totals)
    )
    # The responses without a total have no total Observation.
    assert fhir_marks == {
        (False, 0, False): 320 - 2 * PARTIAL_PATIENTS,
        (True, 1, True): PARTIAL_PATIENTS,
    }


def test_codebook_describes_every_column_of_every_file(bundle: Path) -> None:
    package = json.loads((bundle / "datapackage.json").read_text())
    frictionless = {pa.string(): "string", pa.float64(): "number", pa.bool_(): "boolean"}
    for resource in package["resources"]:
        path = bundle / resource["path"]
        assert path.exists()
        schema = pq.read_schema(bundle / "parquet" / f"{path.stem}.parquet")
        fields = {f["name"]: f for f in resource["schema"]["fields"]}
        assert list(fields) == schema.names
        for field in schema:
            expected = "integer" if pa.types.is_integer(field.type) else frictionless[field.type]
            assert fields[field.name]["type"] == expected
            assert fields[field.name]["description"]
    hours = next(
        f
        for r in package["resources"]
        if r["name"] == "observations-csv"
        for f in r["schema"]["fields"]
        if f["name"] == "hours_since_session"
    )
    assert hours["unit"] == "h"
    assert package["instruments"] == [
        {
            "id": "phq9",
            "version": "1.0.0",
            "scorer_version": "1.0.0",
            "title": package["instruments"][0]["title"],
            "loinc_panel": "44249-1",
            "loinc_total": "44261-6",
            "licence": package["instruments"][0]["licence"],
        }
    ]
    assert package["rules"] == [{"id": "SUICIDALITY-rule", "version": "1.2.0"}]
    assert package["k_anonymity"]["k_required"] == 5
    assert package["k_anonymity"]["k_achieved"] >= 5
    assert package["k_anonymity"]["patients_suppressed"] == 1
    assert package["deidentification"]["classification"] == "safe_harbor"


def test_manifest_lists_every_file_with_its_sha256(bundle: Path) -> None:
    lines = (bundle / MANIFEST).read_text().splitlines()
    listed = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    files = {n for n in _all_bytes(bundle) if n != MANIFEST}
    assert set(listed) == files
    for name, digest in listed.items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest


def test_readme_states_profile_and_k(bundle: Path) -> None:
    readme = (bundle / "README.md").read_text()
    assert "Safe Harbor" in readme
    assert "k achieved: 10" in readme


def test_each_format_is_optional(tmp_path: Path, timelines: list[Any]) -> None:
    run_export(
        timelines,
        tmp_path / "csv-only",
        key=secrets.token_bytes(32),
        formats=ExportFormats(parquet=False, csv=True, fhir_ndjson=False),
    )
    names = set(_all_bytes(tmp_path / "csv-only"))
    assert not any(n.startswith(("parquet/", "fhir/")) for n in names)
    assert "csv/observations.csv" in names
    with pytest.raises(ValueError, match="at least one"):
        ExportFormats(parquet=False, csv=False, fhir_ndjson=False)


def test_the_default_compressed_parquet_opens_too(tmp_path: Path, timelines: list[Any]) -> None:
    run_export(timelines, tmp_path / "z", key=secrets.token_bytes(32))
    metadata = pq.ParquetFile(tmp_path / "z" / "parquet" / "observations.parquet").metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_a_non_empty_directory_is_refused(tmp_path: Path, timelines: list[Any]) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "old").write_text("")
    with pytest.raises(FileExistsError):
        run_export(timelines, tmp_path / "x", key=secrets.token_bytes(32))


def test_a_limited_data_set_shifts_each_patients_times_by_one_constant_offset(
    tmp_path: Path, timelines: list[Any]
) -> None:
    key = secrets.token_bytes(32)
    profile = DeidentificationProfile(date_shift=True)
    run_export(timelines, tmp_path / "lds", key=key, profile=profile)
    sessions = pq.read_table(tmp_path / "lds" / "parquet" / "sessions.parquet")
    assert sessions.schema.field("shifted_start").type == pa.timestamp("us", tz="UTC")
    shifted: dict[str, list[dt.datetime]] = {}
    for row in sessions.to_pylist():
        shifted.setdefault(row["study_id"], []).append(row["shifted_start"])
    pseudonymiser = Pseudonymiser(key)
    offsets = set()
    for timeline in timelines:
        study_id = pseudonymiser.study_id(timeline.patient.patient_id)
        if study_id not in shifted:
            continue  # not consenting, or suppressed
        real = sorted(s.started_at for s in timeline.sessions)
        moved = [a - b for a, b in zip(sorted(shifted[study_id]), real, strict=True)]
        assert len(set(moved)) == 1, "intervals survive the shift"
        assert -364 <= moved[0].days <= -1
        assert moved[0].seconds == 0
        offsets.add(moved[0])
    assert len(offsets) > 10, "the offset differs between patients"
    readme = (tmp_path / "lds" / "README.md").read_text()
    assert "LIMITED DATA SET" in readme
    for line in (
        (tmp_path / "lds" / "fhir" / "MedicationAdministration.ndjson").read_text().splitlines()
    ):
        assert "start" in json.loads(line)["effectivePeriod"]
        MedicationAdministration.model_validate_json(line)
    for line in (
        (tmp_path / "lds" / "fhir" / "QuestionnaireResponse.ndjson").read_text().splitlines()
    ):
        assert "authored" in json.loads(line)
        QuestionnaireResponse.model_validate_json(line)
    for line in (tmp_path / "lds" / "fhir" / "Flag.ndjson").read_text().splitlines():
        assert "start" in json.loads(line)["period"]
        Flag.model_validate_json(line)
    # A timed session observation carries its shifted time; an untimed one has none to shift.
    timed = {"85354-9": True, "moaas": False}
    found: Counter[str] = Counter()
    for line in (tmp_path / "lds" / "fhir" / "Observation.ndjson").read_text().splitlines():
        resource = json.loads(line)
        code = resource["code"]["coding"][0]["code"]
        if code in timed:
            assert ("effectiveDateTime" in resource) is timed[code]
            found[code] += 1
        Observation.model_validate_json(line)
    assert found["85354-9"] == found["moaas"] > 0
    observations = pq.read_table(tmp_path / "lds" / "parquet" / "observations.parquet")
    for timeline in timelines:
        study_id = pseudonymiser.study_id(timeline.patient.patient_id)
        if study_id not in shifted:
            continue
        readings = sorted(
            r["shifted_time"]
            for r in observations.to_pylist()
            if r["study_id"] == study_id and r["variable"] == "bp_systolic"
        )
        real = sorted(m.measured_at for m in timeline.session_observations if m.measured_at)
        reading_offsets = {a - b for a, b in zip(readings, real, strict=True)}
        assert reading_offsets == {
            sorted(shifted[study_id])[0] - min(s.started_at for s in timeline.sessions)
        }
    package = json.loads((tmp_path / "lds" / "datapackage.json").read_text())
    assert package["deidentification"]["limited_data_set"] is True
    assert "There are no calendar dates" not in readme


def test_shifted_dates_leave_out_the_real_first_treatment_year(
    tmp_path: Path, timelines: list[Any]
) -> None:
    """The real year beside a shifted date would bound the secret shift (a first session
    shifted to early January of the real year means a shift of a few days at most), so with
    shifted dates the year is empty in every file, and the gate does not count it either.
    Without a shift it is the real year (`test_parquet_files_open_...`)."""
    profile = DeidentificationProfile(date_shift=True)
    run_export(timelines, tmp_path / "lds", key=secrets.token_bytes(32), profile=profile)
    patients = pq.read_table(tmp_path / "lds" / "parquet" / "patients.parquet")
    assert patients.num_rows == 40
    assert patients.schema.field("first_treatment_year").type == pa.int16()
    assert set(patients.column("first_treatment_year").to_pylist()) == {None}
    csv = pa_csv.read_csv(tmp_path / "lds" / "csv" / "patients.csv")
    assert csv.column("first_treatment_year").null_count == csv.num_rows == 40
    package = json.loads((tmp_path / "lds" / "datapackage.json").read_text())
    generalised = package["k_anonymity"]["generalisation"]["first_treatment_year"]
    assert generalised == "not exported (dates shifted)"
    readme = (tmp_path / "lds" / "README.md").read_text()
    assert "first_treatment_year: not exported (dates shifted)." in readme
    assert "Only `first_treatment_year`" not in readme


def test_free_text_with_shifted_dates_is_marked_both_ways(
    tmp_path: Path, timelines: list[Any]
) -> None:
    profile = DeidentificationProfile(date_shift=True, include_free_text=True)
    run_export(timelines, tmp_path / "both", key=secrets.token_bytes(32), profile=profile)
    readme = (tmp_path / "both" / "README.md").read_text()
    assert "LIMITED DATA SET" in readme
    assert "CONTAINS FREE TEXT" in readme
    package = json.loads((tmp_path / "both" / "datapackage.json").read_text())
    assert package["deidentification"]["classification"] == "requires_review"
    assert package["deidentification"]["limited_data_set"] is True
