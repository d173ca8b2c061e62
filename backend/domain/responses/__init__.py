"""Questionnaire submissions: validate, score, encrypt, store exactly once; read back for the
patient and their clinicians."""
