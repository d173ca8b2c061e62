"""Receipts: the companion app reports that a notification was received and opened.

- `repository`: the SQL (record idempotently, first receipts per check-in).
- `service`: who may report what (only the patient the message went to).
- `controllers`: ``POST /api/v1/notifications/{message_id}/receipts`` for the app.
"""
