"""KEK providers: key material from configuration, the development key file, rotation."""

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.crypto import (
    CryptoError,
    KekProvider,
    KeyMaterialError,
    LocalKekProvider,
    TamperedCiphertextError,
    UnknownKeyError,
    UnsupportedFormatError,
    add_key_to_file,
    generate_key_material,
    load_key_file,
    parse_key_material,
)

DEK = bytes(range(32))
AAD = b"patient-1|v1"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- LocalKekProvider ---


def test_local_provider_satisfies_the_protocol() -> None:
    assert isinstance(LocalKekProvider.generate("k1"), KekProvider)


def test_wrap_then_unwrap_returns_the_data_key() -> None:
    provider = LocalKekProvider.generate("k1")
    kid, wrapped = provider.wrap(DEK, AAD)
    assert kid == "k1"
    assert DEK not in wrapped
    assert provider.unwrap(kid, wrapped, AAD) == DEK


def test_wrapping_twice_uses_fresh_nonces() -> None:
    provider = LocalKekProvider.generate("k1")
    assert provider.wrap(DEK, AAD)[1] != provider.wrap(DEK, AAD)[1]


def test_unwrap_with_other_associated_data_is_tampering() -> None:
    provider = LocalKekProvider.generate("k1")
    kid, wrapped = provider.wrap(DEK, AAD)
    with pytest.raises(TamperedCiphertextError):
        provider.unwrap(kid, wrapped, b"patient-2|v1")


def test_unwrap_with_another_kek_is_tampering() -> None:
    kid, wrapped = LocalKekProvider.generate("k1").wrap(DEK, AAD)
    with pytest.raises(TamperedCiphertextError):
        LocalKekProvider.generate("k1").unwrap(kid, wrapped, AAD)


def test_unwrap_under_a_different_kid_of_the_same_provider_fails() -> None:
    key = AESGCM.generate_key(bit_length=256)
    # Same key bytes under two kids: the kid itself is authenticated, so relabelling is detected.
    provider = LocalKekProvider({"a": key, "b": key}, active_kid="a")
    _, wrapped = provider.wrap(DEK, AAD)
    with pytest.raises(TamperedCiphertextError):
        provider.unwrap("b", wrapped, AAD)


def test_unwrap_with_unknown_kid_is_an_unknown_key() -> None:
    provider = LocalKekProvider.generate("k1")
    _, wrapped = provider.wrap(DEK, AAD)
    with pytest.raises(UnknownKeyError, match="k9"):
        provider.unwrap("k9", wrapped, AAD)


@pytest.mark.parametrize("position", range(61))
def test_every_bit_flip_of_a_wrapped_key_is_detected(position: int) -> None:
    provider = LocalKekProvider.generate("k1")
    kid, wrapped = provider.wrap(DEK, AAD)
    assert len(wrapped) == 61
    damaged = bytearray(wrapped)
    damaged[position] ^= 0x01
    with pytest.raises((TamperedCiphertextError, UnsupportedFormatError)):
        provider.unwrap(kid, bytes(damaged), AAD)


@pytest.mark.parametrize("length", [0, 1, 12, 28, 60])
def test_truncated_wrapped_key_is_rejected(length: int) -> None:
    provider = LocalKekProvider.generate("k1")
    kid, wrapped = provider.wrap(DEK, AAD)
    with pytest.raises((TamperedCiphertextError, UnsupportedFormatError)):
        provider.unwrap(kid, wrapped[:length], AAD)


def test_provider_rejects_keys_of_the_wrong_length_without_echoing_them() -> None:
    short = b"S" * 16
    with pytest.raises(KeyMaterialError) as caught:
        LocalKekProvider({"k1": short}, active_kid="k1")
    assert "SSSS" not in str(caught.value)


def test_provider_rejects_active_kid_it_does_not_hold() -> None:
    with pytest.raises(KeyMaterialError):
        LocalKekProvider({"k1": bytes(32)}, active_kid="k2")


def test_provider_repr_shows_kids_but_not_keys() -> None:
    key = b"\xab" * 32
    text = repr(LocalKekProvider({"k1": key}, active_kid="k1"))
    assert "k1" in text
    assert key.hex() not in text
    assert _b64(key) not in text


# --- parse_key_material ---


def test_parse_key_material_first_entry_is_active_and_all_unwrap() -> None:
    old, new = AESGCM.generate_key(bit_length=256), AESGCM.generate_key(bit_length=256)
    before = LocalKekProvider({"old": old}, active_kid="old")
    kid, wrapped = before.wrap(DEK, AAD)

    provider = parse_key_material(f"new:{_b64(new)}, old:{_b64(old)}")

    assert provider.active_kid == "new"
    assert provider.kids() == frozenset({"new", "old"})
    assert provider.unwrap(kid, wrapped, AAD) == DEK
    assert provider.wrap(DEK, AAD)[0] == "new"


def test_generated_key_material_parses() -> None:
    value = generate_key_material("prod-1")
    assert parse_key_material(value).active_kid == "prod-1"


SECRET_32 = _b64(b"\x17" * 32)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        SECRET_32,  # no kid
        f":{SECRET_32}",  # empty kid
        f"k 1:{SECRET_32}",  # space in kid
        f"k1:{SECRET_32},",  # trailing empty entry
        f"k1:{SECRET_32},k1:{SECRET_32}",  # duplicate kid
        "k1:" + _b64(b"\x17" * 16),  # 128-bit key
        "k1:" + _b64(b"\x17" * 33),
        "k1:" + SECRET_32[:-2],  # bad padding
        "k1:" + SECRET_32.replace("F", "*"),  # not base64
        "k1:" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # wrong alphabet
        "k1:é" + SECRET_32,
    ],
)
def test_malformed_key_material_is_rejected_without_echoing_it(value: str) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        parse_key_material(value)
    message = str(caught.value)
    assert SECRET_32[:12] not in message
    assert "\n" not in message


# --- key file ---


def test_missing_key_file_is_created_with_mode_0600_and_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys" / "kek.json"
    provider, created = load_key_file(path, create=True)
    assert created
    assert _mode(path) == 0o600
    assert _mode(path.parent) & 0o077 == 0
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert document["active_kid"] == provider.active_kid
    [entry] = document["keys"]
    assert entry["kid"] == provider.active_kid
    assert len(base64.b64decode(entry["key"])) == 32
    assert entry["created_at"].endswith("Z")
    assert list(tmp_path.rglob("*.tmp")) == []


def test_reloading_the_key_file_gives_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    first, _ = load_key_file(path, create=True)
    kid, wrapped = first.wrap(DEK, AAD)

    second, created = load_key_file(path, create=True)

    assert not created
    assert second.active_kid == first.active_kid
    assert second.unwrap(kid, wrapped, AAD) == DEK


def test_missing_key_file_without_create_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="does not exist"):
        load_key_file(tmp_path / "kek.json", create=False)


def test_racing_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    results: list[tuple[LocalKekProvider, bool]] = []
    lock = threading.Lock()

    def start() -> None:
        outcome = load_key_file(path, create=True)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({provider.active_kid for provider, _ in results}) == 1
    assert sum(created for _, created in results) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek.json"
    load_key_file(path, create=True)
    path.chmod(mode)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        load_key_file(path, create=True)


def _write_key_file(path: Path, document: object) -> None:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    path.chmod(0o600)


def _valid_document(key: bytes = b"\x17" * 32) -> dict[str, object]:
    return {
        "version": 1,
        "active_kid": "k1",
        "keys": [{"kid": "k1", "key": _b64(key), "created_at": "2025-01-01T00:00:00Z"}],
    }


def test_handwritten_valid_key_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    _write_key_file(path, _valid_document())
    provider, created = load_key_file(path, create=False)
    assert (provider.active_kid, created) == ("k1", False)


def _mutations() -> list[object]:
    def changed(**fields: object) -> dict[str, object]:
        return {**_valid_document(), **fields}

    entry = _valid_document()["keys"][0]  # type: ignore[index]
    return [
        "",
        "not json",
        "[]",
        "{",
        changed(version=2),
        changed(version="1"),
        changed(active_kid="k2"),
        changed(keys=[]),
        changed(keys=[entry, entry]),
        changed(keys=[{**entry, "key": _b64(b"\x17" * 16)}]),
        changed(keys=[{**entry, "key": "%%%"}]),
        changed(keys=[{**entry, "kid": "bad kid"}]),
        changed(keys=[{**entry, "created_at": "yesterday"}]),
        changed(keys=[{**entry, "created_at": "2025-01-01T00:00:00"}]),  # no time zone
        changed(keys=[{"kid": "k1", "key": entry["key"]}]),
        changed(extra=True),
        {k: v for k, v in _valid_document().items() if k != "active_kid"},
    ]


@pytest.mark.parametrize("document", _mutations())
def test_malformed_key_file_is_refused_without_echoing_keys(
    tmp_path: Path, document: object
) -> None:
    path = tmp_path / "kek.json"
    _write_key_file(path, document)
    with pytest.raises(KeyMaterialError) as caught:
        load_key_file(path, create=True)
    assert _b64(b"\x17" * 32)[:12] not in str(caught.value)
    assert _b64(b"\x17" * 16)[:12] not in str(caught.value)


def test_key_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyMaterialError):
        load_key_file(path, create=True)


def test_key_file_through_a_symlink_is_checked_on_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    original, _ = load_key_file(real, create=True)
    link = tmp_path / "kek.json"
    link.symlink_to(real)
    assert load_key_file(link, create=True)[0].active_kid == original.active_kid
    real.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        load_key_file(link, create=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    load_key_file(path, create=True)
    path.chmod(0o000)
    with pytest.raises(KeyMaterialError, match="cannot be opened"):
        load_key_file(path, create=False)


# --- rotation ---


def test_adding_a_key_makes_it_active_and_old_kids_still_unwrap(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    original, _ = load_key_file(path, create=True)
    old_kid, wrapped = original.wrap(DEK, AAD)

    new_kid = add_key_to_file(path)
    newer_kid = add_key_to_file(path)
    rotated, created = load_key_file(path, create=True)

    assert not created
    assert len({old_kid, new_kid, newer_kid}) == 3
    assert rotated.active_kid == newer_kid
    assert rotated.kids() == frozenset({old_kid, new_kid, newer_kid})
    assert rotated.unwrap(old_kid, wrapped, AAD) == DEK
    assert rotated.wrap(DEK, AAD)[0] == newer_kid
    assert _mode(path) == 0o600


def test_concurrent_rotations_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    load_key_file(path, create=True)
    threads = [threading.Thread(target=add_key_to_file, args=(path,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider, _ = load_key_file(path, create=False)
    assert len(provider.kids()) == 7


def test_adding_a_key_to_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError):
        add_key_to_file(tmp_path / "kek.json")
    with pytest.raises(KeyMaterialError):
        add_key_to_file(tmp_path / "missing-dir" / "kek.json")


def test_adding_a_key_to_an_insecure_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    load_key_file(path, create=True)
    path.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        add_key_to_file(path)


def test_key_material_error_is_a_crypto_error() -> None:
    assert issubclass(KeyMaterialError, CryptoError)


def test_key_file_under_a_path_that_is_not_a_directory_is_a_key_material_error(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(KeyMaterialError, match="cannot be written"):
        load_key_file(blocker / "kek.json", create=True)
    with pytest.raises(KeyMaterialError, match="cannot be opened"):
        load_key_file(blocker / "kek.json", create=False)


def test_provider_needs_at_least_one_key() -> None:
    with pytest.raises(KeyMaterialError):
        LocalKekProvider({}, active_kid="k1")
