"""Notification preferences: how each person wants to be reached, honoured at send time.

- `rules`: pure decisions (a patient's channels and quiet hours, a clinician's channel and
  on-call state) from data in to a route out.
- `repository`: the SQL; `gate`: the dispatcher's `MessageGate`, one read per claimed batch.
- `recipients`: a patient's phone number for SMS, decrypted at send time.
- `controllers`: the API for patients, their clinicians, and each clinician's own settings.
"""
