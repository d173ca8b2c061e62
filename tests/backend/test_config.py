from pathlib import Path

import pytest

from backend.config import ConfigError, DatabaseKind, Environment, load_settings


def test_defaults_are_the_embedded_sqlite_development_setup() -> None:
    settings = load_settings({})
    assert settings.env is Environment.DEVELOPMENT
    assert settings.database_kind is DatabaseKind.SQLITE
    assert settings.sqlite_path == Path("var/interlude.sqlite3")
    assert settings.data_dir == Path("var")
    assert settings.kek_file == Path("var/dev-kek.json")
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.auto_migrate is True


def test_data_dir_moves_the_default_database_and_key_file() -> None:
    settings = load_settings({"INTERLUDE_DATA_DIR": "/srv/interlude"})
    assert settings.sqlite_path == Path("/srv/interlude/interlude.sqlite3")
    assert settings.kek_file == Path("/srv/interlude/dev-kek.json")


def test_postgresql_url_is_accepted() -> None:
    settings = load_settings(
        {"INTERLUDE_DATABASE_URL": "postgresql+asyncpg://app:secret@db:5432/interlude"}
    )
    assert settings.database_kind is DatabaseKind.POSTGRESQL
    assert settings.sqlite_path is None


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"INTERLUDE_DATABASE_URL": "mysql://root@localhost/x"}, "INTERLUDE_DATABASE_URL"),
        ({"INTERLUDE_DATABASE_URL": "postgresql://u@h/db"}, "INTERLUDE_DATABASE_URL"),
        ({"INTERLUDE_DATABASE_URL": "not a url"}, "INTERLUDE_DATABASE_URL"),
        ({"INTERLUDE_DATABASE_URL": "postgresql+asyncpg://u@h"}, "INTERLUDE_DATABASE_URL"),
        ({"INTERLUDE_ENV": "prod"}, "INTERLUDE_ENV"),
        ({"INTERLUDE_PORT": "eighty"}, "INTERLUDE_PORT"),
        ({"INTERLUDE_PORT": "70000"}, "INTERLUDE_PORT"),
        ({"INTERLUDE_WORKERS": "0"}, "INTERLUDE_WORKERS"),
        ({"INTERLUDE_LOG_LEVEL": "LOUD"}, "INTERLUDE_LOG_LEVEL"),
        ({"INTERLUDE_AUTO_MIGRATE": "maybe"}, "INTERLUDE_AUTO_MIGRATE"),
        ({"INTERLUDE_TIMER_INTERVAL_SECONDS": "0"}, "INTERLUDE_TIMER_INTERVAL_SECONDS"),
        ({"INTERLUDE_DATABSE_URL": "sqlite+aiosqlite:///x"}, "INTERLUDE_DATABSE_URL"),
    ],
)
def test_a_bad_setting_is_named_in_one_error(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert raised.value.setting == setting
    assert str(raised.value).startswith(f"{setting}: ")
    assert "\n" not in str(raised.value)


def test_sqlite_refuses_more_than_one_worker() -> None:
    with pytest.raises(ConfigError, match="INTERLUDE_WORKERS: SQLite supports one instance"):
        load_settings({"INTERLUDE_WORKERS": "2"})


def test_postgresql_allows_several_workers() -> None:
    settings = load_settings(
        {"INTERLUDE_DATABASE_URL": "postgresql+asyncpg://u@h/db", "INTERLUDE_WORKERS": "4"}
    )
    assert settings.workers == 4


def test_production_refuses_to_start_without_explicit_key_material() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"INTERLUDE_ENV": "production"})
    assert raised.value.setting == "INTERLUDE_KEK"


def test_production_accepts_a_key_file_and_does_not_auto_migrate() -> None:
    settings = load_settings(
        {"INTERLUDE_ENV": "production", "INTERLUDE_KEK_FILE": "/run/secrets/kek.json"}
    )
    assert settings.is_production
    assert settings.kek_file == Path("/run/secrets/kek.json")
    assert settings.auto_migrate is False


def test_key_material_and_key_file_together_are_ambiguous() -> None:
    with pytest.raises(ConfigError, match="not both"):
        load_settings({"INTERLUDE_KEK": "k1:abc", "INTERLUDE_KEK_FILE": "/k.json"})


def test_masked_settings_hide_database_password_and_key_material() -> None:
    settings = load_settings(
        {
            "INTERLUDE_DATABASE_URL": "postgresql+asyncpg://app:s3cret-pw@db/interlude",
            "INTERLUDE_KEK": "k1:c2VjcmV0LWtleS1tYXRlcmlhbA",
        }
    )
    printed = str(settings.masked())
    assert "s3cret-pw" not in printed
    assert "c2VjcmV0LWtleS1tYXRlcmlhbA" not in printed
    assert settings.masked()["kek"] == "***"


def test_harness_variables_are_not_unknown_settings() -> None:
    load_settings({"INTERLUDE_TEST_POSTGRES_URL": "x", "INTERLUDE_REQUIRE_POSTGRES": "1"})


def test_service_secrets_are_known_settings_and_masked() -> None:
    settings = load_settings(
        {
            "INTERLUDE_BLIND_INDEX_KEY": "YmxpbmQtaW5kZXgtc2VjcmV0LW1hdGVyaWFsLTEyMzQ1Njc4",
            "INTERLUDE_TOKEN_SIGNING_KEY": "dG9rZW4tc2lnbmluZy1zZWNyZXQtbWF0ZXJpYWwtMTIzNDU2",
        }
    )
    assert settings.blind_index_key == "YmxpbmQtaW5kZXgtc2VjcmV0LW1hdGVyaWFsLTEyMzQ1Njc4"
    printed = str(settings.masked())
    assert "YmxpbmQt" not in printed
    assert "dG9rZW4t" not in printed
    assert settings.masked()["token_signing_key"] == "***"
    assert load_settings({}).blind_index_key is None
