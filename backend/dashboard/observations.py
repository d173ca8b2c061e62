"""A held session's observations on the patient page: blood pressure, CADSS-6, sedation (MOAA/S),
acute side effects, discharge, REMS monitoring and notes, as the API's
``PUT .../sessions/{id}/observations`` takes them.

The form is drawn from what is stored (a write replaces the observations as a whole, so the form
must carry every reading back), with times in the patient's zone like the other session forms.
Reading the form is a plain function: its result is the API's own `ObservationsInput`, checked
by the same service, so the dashboard cannot store what the API would refuse.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from backend.dashboard.pages import form_time, local_time
from backend.domain.sessions.schemas import (
    SIDE_EFFECT_CODES,
    ObservationsInput,
    SessionView,
)
from backend.lib.errors import InvalidInput

SIDE_EFFECT_LABELS: Final = {
    "nausea": "Nausea",
    "vomiting": "Vomiting",
    "headache": "Headache",
    "dizziness": "Dizziness or light-headedness",
    "sedation": "Drowsiness / sedation",
    "dissociation": "Feeling unreal or detached",
    "anxiety": "Anxiety / panic",
    "blurred_vision": "Blurred vision",
    "numbness": "Numb or tingling mouth or skin",
    "feeling_drunk": "Feeling drunk",
}
SEVERITY_CHOICES: Final = (
    ("", "Not asked"),
    ("0", "None"),
    ("1", "Mild"),
    ("2", "Moderate"),
    ("3", "Severe"),
)
# Empty rows the form offers beyond the readings stored.
SPARE_PRESSURE_ROWS: Final = 2

Form = Mapping[str, Sequence[str]]


class PressureRow(msgspec.Struct, frozen=True, kw_only=True):
    at: str = ""
    systolic: str = ""
    diastolic: str = ""


class SideEffectRow(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    label: str
    severity: str = ""
    onset: str = ""
    note: str = ""


class ObservationFields(msgspec.Struct, frozen=True, kw_only=True):
    """What the form shows: the stored observations as form values (patient's local times)."""

    version: str
    esketamine: bool
    recorded: bool
    pressure: list[PressureRow]
    cadss6: str = ""
    cadss6_at: str = ""
    moaas: str = ""
    moaas_at: str = ""
    side_effects: list[SideEffectRow]
    discharged_at: str = ""
    rems: str = ""
    notes: str = ""
    notes_stored: bool = False


def _text(value: object) -> str:
    return "" if value is None else str(value)


def observation_fields(view: SessionView, zone: ZoneInfo) -> ObservationFields:
    stored = view.observations
    pressure = [
        PressureRow(at=form_time(r.at, zone), systolic=str(r.systolic), diastolic=str(r.diastolic))
        for r in (stored.blood_pressure if stored else ())
    ]
    pressure += [PressureRow()] * SPARE_PRESSURE_ROWS
    by_code = {e.code: e for e in (stored.side_effects if stored else ())}
    # An effect not yet asked about starts at the session's end (its onset can be moved).
    default_onset = form_time(view.ended_at or view.started_at, zone)
    effects = []
    for code in SIDE_EFFECT_CODES:
        effect = by_code.get(code)
        effects.append(
            SideEffectRow(
                code=code,
                label=SIDE_EFFECT_LABELS[code],
                severity="" if effect is None else str(effect.severity),
                onset=default_onset if effect is None else form_time(effect.onset_at, zone),
                note="" if effect is None else (effect.note or ""),
            )
        )
    rems = view.rems_monitoring_completed
    return ObservationFields(
        version=view.version,
        esketamine=view.modality == "esketamine",
        recorded=stored is not None or bool(view.notes) or view.discharged_at is not None,
        pressure=pressure,
        cadss6=_text(stored.cadss6 if stored else None),
        cadss6_at=form_time(stored.cadss6_at if stored else None, zone),
        moaas=_text(stored.sedation_moaas if stored else None),
        moaas_at=form_time(stored.sedation_moaas_at if stored else None, zone),
        side_effects=effects,
        discharged_at=form_time(view.discharged_at, zone),
        rems="" if rems is None else ("yes" if rems else "no"),
        notes=view.notes or "",
        notes_stored=view.notes is not None,
    )


def _one(form: Form, name: str) -> str:
    values = form.get(name) or ("",)
    return values[0].strip()


def observations_input(form: Form, zone: ZoneInfo) -> ObservationsInput:
    """The API's `ObservationsInput` from the form. A blank row or rating is left out; a row
    half filled in is refused (naming the row, never a value), as is anything the API's schema
    refuses (pressures, scores and severities out of range)."""
    readings: list[dict[str, Any]] = []
    rows = zip(
        form.get("bp_at", ()),
        form.get("bp_systolic", ()),
        form.get("bp_diastolic", ()),
        strict=False,
    )
    for number, (at, systolic, diastolic) in enumerate(rows, start=1):
        parts = (at.strip(), systolic.strip(), diastolic.strip())
        if not any(parts):
            continue
        if not all(parts):
            raise InvalidInput(
                f"blood pressure, row {number}: give the time, the systolic and the diastolic"
            )
        what = f"blood pressure, row {number}"
        readings.append(
            {"at": local_time(parts[0], zone, what), "systolic": parts[1], "diastolic": parts[2]}
        )
    observations: dict[str, Any] = {"blood_pressure": readings, "side_effects": []}
    for field, label, name in (
        ("cadss6", "CADSS-6", "cadss6"),
        ("sedation_moaas", "MOAA/S", "moaas"),
    ):
        rated, at = _one(form, name), _one(form, f"{name}_at")
        if rated:
            observations[field] = rated
            if at:
                observations[f"{field}_at"] = local_time(at, zone, f"{label} time")
        elif at:
            raise InvalidInput(f"{label}: a time is given without a rating")
    for code in SIDE_EFFECT_CODES:
        severity = _one(form, f"se_{code}")
        if not severity:
            continue
        onset = _one(form, f"se_{code}_onset")
        label = SIDE_EFFECT_LABELS[code]
        if not onset:
            raise InvalidInput(f"{label}: give when it began")
        effect: dict[str, Any] = {
            "code": code,
            "severity": severity,
            "onset_at": local_time(onset, zone, f"{label}, onset"),
        }
        note = _one(form, f"se_{code}_note")
        if note:
            effect["note"] = note
        observations["side_effects"].append(effect)
    fields: dict[str, Any] = {"observations": observations}
    notes = _one(form, "notes")
    # Blank notes clear notes the form was drawn with; where there were none, none are written.
    if notes or _one(form, "notes_stored"):
        fields["notes"] = notes
    discharged = _one(form, "discharged_at")
    if discharged:
        fields["discharged_at"] = local_time(discharged, zone, "discharged")
    rems = _one(form, "rems")
    if rems:
        if rems not in ("yes", "no"):
            raise InvalidInput("REMS monitoring: choose yes or no")
        fields["rems_monitoring_completed"] = rems == "yes"
    try:
        return msgspec.convert(fields, ObservationsInput, strict=False)
    except msgspec.ValidationError as error:
        # msgspec names the field and the bound, never the value entered.
        raise InvalidInput(f"the observations were not recorded ({error})") from None
