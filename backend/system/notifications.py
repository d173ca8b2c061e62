"""Builds the delivery channels from INTERLUDE_NOTIFICATIONS_CONFIG (or the console default)."""

import msgspec

from backend.config import PREFIX, ConfigError, Settings
from notifications.console import ConsoleConfig
from notifications.registry import NotificationsConfig

SETTING = f"{PREFIX}NOTIFICATIONS_CONFIG"


def load_notifications_config(settings: Settings) -> NotificationsConfig:
    """The channel configuration; a missing or invalid file is a ConfigError naming the setting.

    Error messages say what is wrong and where, never the file's contents (it holds secrets).
    """
    default_console = ConsoleConfig(path=str(settings.data_dir / "notifications.jsonl"))
    if settings.notifications_config is None:
        return NotificationsConfig(console=default_console)
    path = settings.notifications_config
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(SETTING, f"cannot read {path}: {error.strerror}") from None
    try:
        config = msgspec.json.decode(raw, type=NotificationsConfig)
    except msgspec.ValidationError as error:
        # msgspec names the field path ("... - at `$.webhook.endpoints`"), not the value.
        raise ConfigError(SETTING, f"{path}: {error}") from None
    except msgspec.DecodeError:
        raise ConfigError(SETTING, f"{path} is not valid JSON") from None
    if config.console.path is None:
        config = msgspec.structs.replace(config, console=default_console)
    return config
