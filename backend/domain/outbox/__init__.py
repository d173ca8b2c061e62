"""The notification outbox: rows written with their cause, claimed and sent by every instance."""
