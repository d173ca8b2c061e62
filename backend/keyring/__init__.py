"""Data keys in the database (per-owner DEKs, KEK rotation) and the service secrets.

Public API: ``Keyring`` / ``OwnerKeys`` (``service``), ``ServiceSecrets`` / ``load_service_secrets``
(``secrets``), ``rewrap_data_keys`` / ``key_status`` (``rotation``). Pure crypto is in
``backend.crypto``.
"""
