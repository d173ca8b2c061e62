"""The catalogue: loaded once, looked up by id (latest) or id + version, and internally coherent."""

from pathlib import Path

import msgspec
import pytest

from questionnaires import registry
from questionnaires.answers import Submission
from questionnaires.errors import (
    AnswerValidationError,
    InstrumentDefinitionError,
    UnknownInstrumentError,
)
from questionnaires.registry import Catalogue, load_files
from tests.questionnaires.synthetic import definition, demo

SHIPPED = {
    "phq9",
    "phq9-24h",
    "phq2",
    "gad7",
    "qids-sr16",
    "madrs-s",
    "madrs",
    "hamd17",
    "cadss6",
    "mnsi-q",
    "n2o-neuro",
    "side-effects",
    "ketamine-bladder-misuse",
    "b12-risk",
    "blood-pressure",
    "home-blood-pressure",
    "ketamine-cognition",
}


def test_every_specified_instrument_is_shipped_once() -> None:
    assert {i.id for i in registry.list_instruments()} == SHIPPED


def test_the_catalogue_is_loaded_once() -> None:
    assert registry.catalogue() is registry.catalogue()


def test_get_by_id_and_version() -> None:
    assert registry.get_instrument("phq9").version == "1.0.0"
    assert registry.get_instrument("phq9", "1.0.0").id == "phq9"
    with pytest.raises(UnknownInstrumentError, match=r"unknown instrument: phq9 version 9.9.9"):
        registry.get_instrument("phq9", "9.9.9")
    with pytest.raises(UnknownInstrumentError, match=r"unknown instrument: bdi$"):
        registry.get_instrument("bdi")


def test_licence_flags() -> None:
    assert registry.requires_licensed_text("qids-sr16")
    assert registry.requires_licensed_text("madrs-s")
    assert registry.requires_licensed_text("madrs")
    assert registry.requires_licensed_text("cadss6")
    assert not registry.requires_licensed_text("phq9")
    assert registry.licence("phq9").status == "free"
    assert "No permission required" in registry.licence("gad7").notice


def test_short_and_two_week_recall_never_share_a_trajectory() -> None:
    keys = [(i.trajectory_key, i.recall.hours) for i in registry.list_instruments()]
    assert len({key for key, _ in keys}) == len(keys)
    assert registry.get_instrument("phq9").recall.hours == 336
    assert registry.get_instrument("phq9-24h").recall.hours == 24


def test_scoring_an_unknown_instrument_or_version_is_an_answer_problem() -> None:
    with pytest.raises(AnswerValidationError, match="wrong_instrument"):
        registry.score_submission(
            msgspec.convert(
                {"instrumentId": "bdi", "instrumentVersion": "1.0.0", "answers": []},
                Submission,
            )
        )


def write(folder: Path, name: str, **changes: object) -> None:
    (folder / name).write_bytes(msgspec.json.encode(definition(**changes)))


def test_latest_version_wins_and_old_versions_stay_available(tmp_path: Path) -> None:
    write(tmp_path, "demo.json")
    write(tmp_path, "demo@1.10.0.json", version="1.10.0")
    write(tmp_path, "demo@1.9.0.json", version="1.9.0")
    (tmp_path / "README.md").write_text("ignored")
    catalogue = load_files(sorted(tmp_path.iterdir()))
    assert catalogue.get("demo").version == "1.10.0"
    assert catalogue.versions("demo") == ["1.0.0", "1.9.0", "1.10.0"]
    assert [i.version for i in catalogue.instruments()] == ["1.10.0"]
    with pytest.raises(UnknownInstrumentError):
        catalogue.versions("nope")


def test_file_name_must_match_the_id(tmp_path: Path) -> None:
    write(tmp_path, "other.json")
    with pytest.raises(InstrumentDefinitionError, match=r"other.json: file name does not match id"):
        load_files(tmp_path.iterdir())


def test_a_version_defined_twice_is_refused() -> None:
    with pytest.raises(InstrumentDefinitionError, match=r"demo version 1.0.0 is defined twice"):
        Catalogue([demo(), demo()])


def test_versions_must_keep_their_trajectory_and_recall() -> None:
    changed = demo(definition(version="2.0.0", recall={"text": "last 2 weeks", "hours": 336}))
    with pytest.raises(InstrumentDefinitionError, match="differ in trajectory key or recall"):
        Catalogue([demo(), changed])


def test_two_instruments_cannot_share_a_trajectory() -> None:
    other = demo(definition(id="other"))
    with pytest.raises(
        InstrumentDefinitionError, match="trajectory key 'demo' is shared by demo and other"
    ):
        Catalogue([demo(), other])
