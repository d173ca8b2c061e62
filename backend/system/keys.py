"""Loads the key-encryption key (KEK) named by the settings, or generates the development key."""

import logging

from backend.config import PREFIX, ConfigError, Settings
from backend.crypto.kek import KekProvider, KeyMaterialError, load_key_file, parse_key_material

logger = logging.getLogger("interlude.keys")

DEV_KEY_WARNING = (
    "DEVELOPMENT KEY IN USE: answers are encrypted with a key generated on this machine at {path}. "
    "It is for development only; production must set INTERLUDE_KEK or INTERLUDE_KEK_FILE "
    "(and INTERLUDE_ENV=production refuses to start without one)."
)


_announced = False


def load_kek(settings: Settings) -> KekProvider:
    """The KEK provider; raises ConfigError (naming the setting) when key material is unusable."""
    if settings.kek is not None:
        try:
            return parse_key_material(settings.kek)
        except KeyMaterialError as error:
            raise ConfigError(f"{PREFIX}KEK", str(error)) from None
    try:
        # Only development may create a key; production must be handed one (config refuses
        # production without INTERLUDE_KEK / INTERLUDE_KEK_FILE, and the file must exist).
        provider, created = load_key_file(settings.kek_file, create=not settings.is_production)
    except KeyMaterialError as error:
        raise ConfigError(f"{PREFIX}KEK_FILE", str(error)) from None
    global _announced
    if not settings.is_production and (created or not _announced):
        _announced = True
        banner = "!" * 78
        message = DEV_KEY_WARNING.format(path=settings.kek_file)
        if created:
            message = "generated a new key file. " + message
        logger.warning("%s\n%s\n%s", banner, message, banner)
    return provider
