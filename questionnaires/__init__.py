"""Instrument catalogue, answer validation, scoring and FHIR interchange (pure: no I/O but
reading its own data files, no clock, no database).

- `questionnaires.registry`: list_instruments, get_instrument, licence, requires_licensed_text,
  score_submission (the shipped catalogue, loaded once).
- `questionnaires.answers`: Submission / Answer (the answer form), validate_answers.
- `questionnaires.scoring`: score, Score, SafetyFlag, SCORER_VERSION.
- `questionnaires.fhir`: render_questionnaire, parse_questionnaire_response,
  questionnaire_reference.
- `questionnaires.model`: the definition format; `questionnaires/instruments/*.json` the data.
- `questionnaires.errors`: AnswerValidationError, InstrumentDefinitionError, UnknownInstrumentError.
"""
