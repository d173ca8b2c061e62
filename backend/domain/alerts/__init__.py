"""Clinical alert rules (clinical-spec §2.4, §4.2, §5.1-§5.3): pure functions of a patient's
timeline. Public API: `engine.evaluate_alerts`, `timeline.PatientTimeline` and its parts,
`parameters.load_parameters` / `build_parameters`, `candidate.AlertCandidate`."""
