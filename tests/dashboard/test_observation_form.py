"""The observations form as plain functions: what is stored comes back unchanged through the
form (a save of an untouched form changes nothing, whatever the patient's zone), blank rows are
left out, and a half-filled row or a value out of range is refused without echoing it."""

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.dashboard.observations import (
    SPARE_PRESSURE_ROWS,
    ObservationFields,
    observation_fields,
    observations_input,
)
from backend.domain.sessions.schemas import (
    SIDE_EFFECT_CODES,
    BloodPressureReading,
    Observations,
    SessionView,
    SideEffect,
)
from backend.lib.errors import InvalidInput

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # a DST night in Europe
END = START + timedelta(hours=1)


def _view(observations: Observations | None, **changes: object) -> SessionView:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "course_id": uuid.uuid4(),
        "patient_id": uuid.uuid4(),
        "modality": "esketamine",
        "status": "completed",
        "planned_start": START,
        "planned_end": END,
        "started_at": START,
        "ended_at": END,
        "last_in_course": False,
        "n2o_concentration_percent": None,
        "n2o_minutes": None,
        "ketamine_mg_per_kg": None,
        "ketamine_minutes": None,
        "esketamine_mg": 84,
        "discharged_at": None,
        "rems_monitoring_completed": None,
        "observations": observations,
        "notes": None,
        "version": "v1",
    }
    fields.update(changes)
    return SessionView(**fields)  # type: ignore[arg-type]


def _as_form(fields: ObservationFields) -> dict[str, list[str]]:
    """What the browser posts for the form as drawn (untouched)."""
    form: dict[str, list[str]] = {
        "version": [fields.version],
        "bp_at": [r.at for r in fields.pressure],
        "bp_systolic": [r.systolic for r in fields.pressure],
        "bp_diastolic": [r.diastolic for r in fields.pressure],
        "cadss6": [fields.cadss6],
        "cadss6_at": [fields.cadss6_at],
        "moaas": [fields.moaas],
        "moaas_at": [fields.moaas_at],
        "discharged_at": [fields.discharged_at],
        "rems": [fields.rems],
        "notes": [fields.notes],
    }
    if fields.notes_stored:
        form["notes_stored"] = ["1"]
    for effect in fields.side_effects:
        form[f"se_{effect.code}"] = [effect.severity]
        form[f"se_{effect.code}_onset"] = [effect.onset]
        form[f"se_{effect.code}_note"] = [effect.note]
    return form


minutes = st.integers(min_value=0, max_value=600).map(lambda m: START + timedelta(minutes=m))
readings = st.builds(
    BloodPressureReading,
    at=minutes,
    systolic=st.integers(min_value=100, max_value=300),
    diastolic=st.integers(min_value=20, max_value=99),
)
effects = st.lists(
    st.builds(
        SideEffect,
        code=st.sampled_from(SIDE_EFFECT_CODES),
        severity=st.integers(min_value=0, max_value=3),
        onset_at=minutes,
        note=st.none()
        | st.text(alphabet="abc xyz.", min_size=1, max_size=20).map(str.strip).filter(bool),
    ),
    unique_by=lambda e: e.code,
    max_size=10,
)
stored_observations = st.builds(
    Observations,
    blood_pressure=st.lists(readings, max_size=5).map(tuple),
    cadss6=st.none() | st.integers(min_value=0, max_value=24),
    sedation_moaas=st.none() | st.integers(min_value=0, max_value=5),
    side_effects=effects.map(
        lambda e: tuple(sorted(e, key=lambda x: SIDE_EFFECT_CODES.index(x.code)))
    ),
)


@given(
    stored_observations,
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]),
    st.sampled_from([None, True, False]),
)
def test_an_untouched_form_saves_what_is_stored(
    stored: Observations, zone_name: str, rems: bool | None
) -> None:
    zone = ZoneInfo(zone_name)
    view = _view(stored, notes="Tolerated well", rems_monitoring_completed=rems, discharged_at=END)
    fields = observation_fields(view, zone)
    assert len(fields.pressure) == len(stored.blood_pressure) + SPARE_PRESSURE_ROWS
    saved = observations_input(_as_form(fields), zone)
    assert saved.observations == stored
    assert saved.notes == "Tolerated well"
    assert saved.discharged_at == END
    assert saved.rems_monitoring_completed is rems


def test_a_session_without_observations_draws_an_empty_form_and_saves_none_of_them() -> None:
    zone = ZoneInfo("Europe/Paris")
    fields = observation_fields(_view(None), zone)
    assert not fields.recorded
    assert fields.esketamine
    # Side effects not asked about start at the session's end, in the patient's zone.
    assert {e.onset for e in fields.side_effects} == {"2026-03-29T03:30"}
    saved = observations_input(_as_form(fields), zone)
    assert saved.observations == Observations()
    assert saved.discharged_at is None
    assert saved.rems_monitoring_completed is None
    assert saved.notes is None  # none written where there were none


def test_notes_emptied_on_the_form_are_cleared() -> None:
    zone = ZoneInfo("UTC")
    form = _as_form(observation_fields(_view(None, notes="Call back tomorrow"), zone))
    form["notes"] = [""]
    assert observations_input(form, zone).notes == ""


def test_times_are_read_in_the_patient_s_zone() -> None:
    form = {
        "bp_at": ["2026-03-29T03:40"],
        "bp_systolic": ["150"],
        "bp_diastolic": ["95"],
        "se_nausea": ["2"],
        "se_nausea_onset": ["2026-03-29T03:45"],
    }
    saved = observations_input(form, ZoneInfo("Europe/Paris"))
    assert saved.observations is not None
    assert saved.observations.blood_pressure[0].at == datetime(2026, 3, 29, 1, 40, tzinfo=UTC)
    (nausea,) = saved.observations.side_effects
    assert (nausea.code, nausea.severity) == ("nausea", 2)
    assert nausea.onset_at == datetime(2026, 3, 29, 1, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"bp_at": ["2026-03-29T03:40"], "bp_systolic": ["150"], "bp_diastolic": [""]}, "row 1"),
        ({"bp_at": ["soon"], "bp_systolic": ["150"], "bp_diastolic": ["95"]}, "date and a time"),
        ({"bp_at": ["2026-03-29T03:40"], "bp_systolic": ["987"], "bp_diastolic": ["95"]}, "300"),
        ({"cadss6_at": ["2026-03-29T03:40"]}, "without a rating"),
        ({"cadss6": ["31"]}, "24"),
        ({"moaas": ["x7"]}, "sedation_moaas"),
        ({"se_headache": ["2"], "se_headache_onset": [""]}, "Headache: give when it began"),
        ({"se_headache": ["9"], "se_headache_onset": ["2026-03-29T03:40"]}, "severity"),
        ({"rems": ["maybe"]}, "yes or no"),
    ],
)
def test_a_half_filled_or_out_of_range_entry_is_refused(
    form: dict[str, list[str]], says: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        observations_input(form, ZoneInfo("UTC"))
    message = refused.value.detail
    assert says in message
    for value in ("987", "31", "x7", "maybe"):
        assert value not in message
