"""Serves the questionnaire catalogue (our JSON and FHIR R4 ``Questionnaire``)."""
