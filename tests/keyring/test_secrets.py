"""Service secrets: from configuration in production, from a generated file in development."""

import base64
import logging
import os
import stat
from pathlib import Path

import pytest

from backend.config import ConfigError, load_settings
from backend.crypto import BlindIndexer, BlindIndexPurpose, derive_blind_index_root
from backend.keyring.secrets import DEV_SECRETS_FILE, generate_secret, load_service_secrets

PRODUCTION = {"INTERLUDE_ENV": "production", "INTERLUDE_KEK_FILE": "/run/secrets/kek.json"}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def test_development_generates_a_private_file_once_and_reuses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings({"INTERLUDE_DATA_DIR": str(tmp_path)})
    with caplog.at_level(logging.WARNING, logger="interlude.keys"):
        first = load_service_secrets(settings)
    path = tmp_path / DEV_SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "DEVELOPMENT SECRETS IN USE" in caplog.text
    assert "generated a new development secrets file" in caplog.text
    second = load_service_secrets(settings)
    assert second == first
    assert len(first.token_signing_key) >= 32
    assert len(first.blind_index_root) == 32
    assert first.blind_index_root != first.token_signing_key
    # Nothing but tmp files: the temporary used for the atomic publish is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEV_SECRETS_FILE]


def test_an_existing_development_file_is_never_overwritten(tmp_path: Path) -> None:
    settings = load_settings({"INTERLUDE_DATA_DIR": str(tmp_path)})
    first = load_service_secrets(settings)
    before = (tmp_path / DEV_SECRETS_FILE).read_bytes()
    load_service_secrets(settings)
    assert (tmp_path / DEV_SECRETS_FILE).read_bytes() == before
    assert load_service_secrets(settings) == first


def test_a_development_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    settings = load_settings({"INTERLUDE_DATA_DIR": str(tmp_path)})
    load_service_secrets(settings)
    os.chmod(tmp_path / DEV_SECRETS_FILE, 0o644)
    with pytest.raises(ConfigError, match="chmod 600") as raised:
        load_service_secrets(settings)
    assert raised.value.setting == "INTERLUDE_DATA_DIR"


def test_a_corrupt_development_file_is_one_line_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / DEV_SECRETS_FILE
    path.write_text('{"version": 1, "blind_index_key": "hunter2"}')
    path.chmod(0o600)
    settings = load_settings({"INTERLUDE_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError) as raised:
        load_service_secrets(settings)
    assert "hunter2" not in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("missing", ["INTERLUDE_BLIND_INDEX_KEY", "INTERLUDE_TOKEN_SIGNING_KEY"])
def test_production_names_the_missing_secret(missing: str, tmp_path: Path) -> None:
    env = {
        **PRODUCTION,
        "INTERLUDE_DATA_DIR": str(tmp_path),
        "INTERLUDE_BLIND_INDEX_KEY": generate_secret(),
        "INTERLUDE_TOKEN_SIGNING_KEY": generate_secret(),
    }
    del env[missing]
    with pytest.raises(ConfigError) as raised:
        load_service_secrets(load_settings(env))
    assert raised.value.setting == missing
    assert not (tmp_path / DEV_SECRETS_FILE).exists()


@pytest.mark.parametrize(
    "value", ["not base64 at all!", _b64(b"short"), _b64(bytes(31)), "hunter2hunter2"]
)
def test_an_unusable_secret_is_refused_without_echoing_it(value: str) -> None:
    env = {
        **PRODUCTION,
        "INTERLUDE_BLIND_INDEX_KEY": generate_secret(),
        "INTERLUDE_TOKEN_SIGNING_KEY": value,
    }
    with pytest.raises(ConfigError) as raised:
        load_service_secrets(load_settings(env))
    assert raised.value.setting == "INTERLUDE_TOKEN_SIGNING_KEY"
    assert value not in str(raised.value)


def test_production_secrets_accept_base64url_without_padding(tmp_path: Path) -> None:
    signing = bytes(range(250, 256)) * 6  # 36 bytes whose base64 needs "-" / "_" in url form
    index_secret = os.urandom(48)
    env = {
        **PRODUCTION,
        "INTERLUDE_DATA_DIR": str(tmp_path),
        "INTERLUDE_BLIND_INDEX_KEY": base64.urlsafe_b64encode(index_secret).decode().rstrip("="),
        "INTERLUDE_TOKEN_SIGNING_KEY": base64.urlsafe_b64encode(signing).decode().rstrip("="),
    }
    assert "-" in env["INTERLUDE_TOKEN_SIGNING_KEY"] or "_" in env["INTERLUDE_TOKEN_SIGNING_KEY"]
    secrets = load_service_secrets(load_settings(env))
    assert secrets.token_signing_key == signing
    assert secrets.blind_index_root == derive_blind_index_root(index_secret)
    assert not (tmp_path / DEV_SECRETS_FILE).exists()


def test_blind_indexes_survive_a_restart_with_the_same_secret(tmp_path: Path) -> None:
    settings = load_settings({"INTERLUDE_DATA_DIR": str(tmp_path)})
    purpose = BlindIndexPurpose(table="patients", column="email")
    first = BlindIndexer(load_service_secrets(settings).blind_index_root)
    second = BlindIndexer(load_service_secrets(settings).blind_index_root)
    assert first.compute(purpose, "a@example.org") == second.compute(purpose, "a@example.org")


def test_secrets_never_appear_in_repr(tmp_path: Path) -> None:
    secrets = load_service_secrets(load_settings({"INTERLUDE_DATA_DIR": str(tmp_path)}))
    assert repr(secrets) == "ServiceSecrets(<hidden>)"
    assert secrets.token_signing_key.hex() not in repr(secrets)
