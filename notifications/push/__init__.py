"""Push adapters for the companion app: Web Push, FCM HTTP v1 (Android) and APNs (iOS)."""
