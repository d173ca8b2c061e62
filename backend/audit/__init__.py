"""The tamper-evident audit log: append-only, hash-chained per clinic, verifiable.

Public API: ``AuditEvent``, ``record_audit``, ``verify_audit_chain`` (``service``); the pure chain
encoding is ``chain``.
"""
