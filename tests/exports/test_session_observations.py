"""What the clinic recorded at the sessions (blood pressure, CADSS-6, MOAA/S, side effects) leaves
in every format on the treatment time line of the session it belongs to, on both databases; a
clinician's side-effect note only when the export opted in to free text."""

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from fhir.resources.R4B.observation import Observation
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.exports.fhir import SESSION_OBSERVATION_SYSTEM, SIDE_EFFECT_SYSTEM
from backend.domain.sessions.schemas import SIDE_EFFECT_CODES
from tests.exports.world import SESSION_ROWS_PER_PATIENT, build_world, export_and_download
from tests.identity.conftest import MovableClock

LOINC = "http://loinc.org"


def _session_rows(bundle: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(bundle / "parquet" / "observations.parquet").to_pylist()
    return [r for r in rows if r["kind"] in ("session_observation", "side_effect", "free_text")]


def _place(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["course_index"],
        row["session_index"],
        row["hours_since_session"],
        row["hours_since_course_start"],
        row["day_since_course_start"],
    )


async def test_session_observations_and_side_effects_leave_on_the_session_time_line(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    _job, bundle = await export_and_download(
        api,
        world.staff["researcher_a"],
        tmp_path / "b",
        formats=["parquet", "csv", "fhir_ndjson"],
    )
    consenting = len(world.consenting)
    indices = range(consenting)  # the consenting patients are the first six (`build_world`)
    rows = _session_rows(bundle)
    assert len(rows) == consenting * SESSION_ROWS_PER_PATIENT
    assert not [r for r in rows if r["kind"] == "free_text"], "notes need the free-text opt-in"
    assert "value_text" not in rows[0]
    assert {r["instrument_id"] for r in rows} == {None}
    by_variable: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_variable.setdefault(row["variable"], []).append(row)
    assert Counter({v: len(rs) for v, rs in by_variable.items()}) == Counter(
        {
            "bp_systolic": 2 * consenting,
            "bp_diastolic": 2 * consenting,
            "cadss6_total": consenting,
            "moaas": 2 * consenting,
            "nausea": consenting,
            "dizziness": consenting,
            "headache": consenting,
        }
    )
    # Values as recorded (they vary by patient: `world._observations`).
    assert sorted(r["value"] for r in by_variable["bp_systolic"]) == sorted(
        [130.0 + i for i in indices] + [142.0] * consenting
    )
    assert sorted(r["value"] for r in by_variable["bp_diastolic"]) == sorted(
        [85.0] * consenting + [90.0 + i for i in indices]
    )
    assert sorted(r["value"] for r in by_variable["cadss6_total"]) == [7.0 + i for i in indices]
    assert (
        sorted(r["value"] for r in by_variable["moaas"]) == [4.0] * consenting + [5.0] * consenting
    )
    assert {(r["variable"], r["value"]) for r in rows if r["kind"] == "side_effect"} == {
        ("nausea", 2.0),
        ("dizziness", 1.0),
        ("headache", 3.0),
    }
    # Places, relative to the session they were recorded at (course 1; session 2 began 48 h
    # after session 1). A pre-dose reading belongs to session 1 with negative hours; a rating
    # without a recorded time has no hours since the session.
    places = {(r["variable"], r["value"] in (85.0, 142.0), _place(r)) for r in rows}
    assert places == {
        ("bp_systolic", False, (1, 1, -0.17, -0.17, -1)),
        ("bp_diastolic", True, (1, 1, -0.17, -0.17, -1)),
        ("bp_systolic", True, (1, 1, 1.17, 1.17, 0)),
        ("bp_diastolic", False, (1, 1, 1.17, 1.17, 0)),
        ("cadss6_total", False, (1, 1, 0.67, 0.67, 0)),
        ("moaas", False, (1, 1, None, 0.0, 0)),
        ("moaas", False, (1, 2, 1.08, 49.08, 2)),
        ("nausea", False, (1, 1, 0.5, 0.5, 0)),
        ("dizziness", False, (1, 1, 2.0, 2.0, 0)),
        ("headache", False, (1, 2, 3.0, 51.0, 2)),
    }
    # The two values of one reading share their record id; every other record is its own.
    records = Counter(r["record_id"] for r in rows)
    assert sorted(Counter(records.values()).items()) == [
        (1, consenting * (SESSION_ROWS_PER_PATIENT - 4)),
        (2, consenting * 2),
    ]
    # CSV: the same rows.
    with (bundle / "csv" / "observations.csv").open(encoding="utf-8") as handle:
        csv_rows = [
            r for r in csv.DictReader(handle) if r["kind"] != "item" and r["kind"] != "total"
        ]
    assert sorted((r["record_id"], r["variable"], float(r["value"])) for r in csv_rows) == sorted(
        (r["record_id"], r["variable"], r["value"]) for r in rows
    )

    # FHIR: one Observation per reading, rating and side effect, each part of its session.
    resources = [
        json.loads(line)
        for line in (bundle / "fhir" / "Observation.ndjson").read_text().splitlines()
    ]
    for resource in resources:
        Observation.model_validate(resource)
    sessions = {
        json.loads(line)["id"]
        for line in (bundle / "fhir" / "MedicationAdministration.ndjson").read_text().splitlines()
    }
    pressures = [r for r in resources if r["code"]["coding"][0]["code"] == "85354-9"]
    assert len(pressures) == 2 * consenting
    for resource in pressures:
        assert resource["category"][0]["coding"][0]["code"] == "vital-signs"
        components = {
            c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in resource["component"]
        }
        assert set(components) == {"8480-6", "8462-4"}
        assert {q["code"] for q in components.values()} == {"mm[Hg]"}
        assert components["8480-6"]["value"] > components["8462-4"]["value"]
    ratings = [
        r for r in resources if r["code"]["coding"][0]["system"] == SESSION_OBSERVATION_SYSTEM
    ]
    assert Counter(r["code"]["coding"][0]["code"] for r in ratings) == Counter(
        {"cadss6_total": consenting, "moaas": 2 * consenting}
    )
    effects = [r for r in resources if r["code"]["coding"][0]["system"] == SIDE_EFFECT_SYSTEM]
    assert len(effects) == 3 * consenting
    assert {(r["code"]["coding"][0]["display"], r["valueInteger"]) for r in effects} == {
        ("Nausea", 2),
        ("Dizziness or light-headedness", 1),
        ("Headache", 3),
    }
    assert not [r for r in effects if "note" in r]
    for resource in pressures + ratings + effects:
        (part_of,) = resource["partOf"]
        kind, _, session_id = part_of["reference"].partition("/")
        assert kind == "MedicationAdministration"
        assert session_id in sessions
        assert "effectiveDateTime" not in resource  # no date without a date shift

    # The codebook names every new variable with its unit and range, and says where the
    # patients' own side-effect reports are.
    package = json.loads((bundle / "datapackage.json").read_text())
    variables = {v["variable"]: v for v in package["variables"]}
    assert variables["bp_systolic"]["unit"] == variables["bp_diastolic"]["unit"] == "mm[Hg]"
    assert (variables["cadss6_total"]["minimum"], variables["cadss6_total"]["maximum"]) == (0, 24)
    assert (variables["moaas"]["minimum"], variables["moaas"]["maximum"]) == (0, 5)
    assert set(SIDE_EFFECT_CODES) <= set(variables)
    assert "instrument 'side-effects'" in package["side_effects"]
    (observations,) = [r for r in package["resources"] if r["name"] == "observations-parquet"]
    (kind,) = [f for f in observations["schema"]["fields"] if f["name"] == "kind"]
    assert "session_observation" in kind["constraints"]["enum"]


async def test_a_clinicians_side_effect_note_leaves_only_with_free_text(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    notes = {f"{p.name} said: {p.note}" for p in world.consenting}
    _job, bundle = await export_and_download(
        api,
        world.staff["admin_a"],
        tmp_path / "text",
        formats=["parquet", "fhir_ndjson"],
        include_free_text=True,
    )
    rows = _session_rows(bundle)
    texts = [r for r in rows if r["kind"] == "free_text"]
    assert {r["value_text"] for r in texts} == notes
    assert {r["variable"] for r in texts} == {"nausea_note"}
    nausea = {r["record_id"]: _place(r) for r in rows if r["variable"] == "nausea"}
    assert {r["record_id"]: _place(r) for r in texts} == nausea  # the note sits with its report
    fhir_notes = [
        note["text"]
        for line in (bundle / "fhir" / "Observation.ndjson").read_text().splitlines()
        for note in json.loads(line).get("note", ())
    ]
    assert set(fhir_notes) == notes
