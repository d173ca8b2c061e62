"""The tamper-evident audit log: append-only, hash-chained per clinic, verifiable.

Public API: ``AuditEvent``, ``record_audit``, ``verify_audit_chain`` (``service``);
``seal_pending``, ``AuditSealer`` (``sealer``, run on a timer by every instance); the pure chain
encoding is ``chain``.
"""
