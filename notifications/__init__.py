"""Outbound delivery adapters behind one protocol: `await notifier.send(message) -> Receipt`.

Pure package: no database, never imports `backend`. The backend's outbox dispatcher builds one
`NotifierRegistry` from configuration and calls `send` for each claimed row; a notifier never
raises for a delivery failure, it returns a receipt saying delivered/accepted, retryable (with an
optional `retry_after_seconds`) or permanent (with a safe `reason`; `token_invalid` means drop the
device, `recipient_invalid` means fix the contact).

- `notifications.base`: Message, MessageData, WebPushSubscription, Channel, Urgency, Receipt,
  DeliveryStatus, FailureReason, RETRYABLE_REASONS, DeliveryError, Notifier.
- `notifications.templates`: MessageKind, Audience, TEMPLATES (the only texts; no placeholders).
- `notifications.registry`: NotificationsConfig, NotifierRegistry, build_notifiers.
- Adapters, each with its config Struct: `console` (development default), `webhook`
  (+ `verify_webhook` for receivers), `email` (SMTP + STARTTLS), `sms` (Twilio-style),
  `push.webpush` (VAPID + aes128gcm), `push.fcm` (HTTP v1), `push.apns` (HTTP/2).
- `notifications.http`: failure classification shared by the HTTP adapters.
"""
