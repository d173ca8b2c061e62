"""Check-in planning: the pure core (no database, no HTTP, no clock) of issue 6.

- `protocols`: per-modality protocols as versioned data (`protocols/*.json`, clinical-spec §4.2),
  clinic overrides, validation against the questionnaire catalogue.
- `plans`: the planner's inputs (`PlannedSession`, `PatientSchedulingContext`) and outputs
  (`CheckInPlan`, stored with a status as `ExistingCheckIn`).
- `quiet_hours`: quiet hours in the patient's local time and placement inside a window.
- `planning`: `plan_check_ins(session, protocol, patient)`.
- `merging`: `merge_check_ins` — no instrument asked twice for overlapping windows.
- `replanning`: `replan`, `replan_for_patient`, `apply_decision` — new, moved or cancelled
  sessions and time-zone changes touch only what was not yet sent.
- `exposure`: N2O cumulative inhalation, shortest interval and §5.1 monitoring triggers.

Services call `replan` (not `plan_check_ins`) when a session is recorded, moved or cancelled, with
every check-in of the patient, and also re-plan the session before it, whose
`next_session_starts_at` changed.
"""
