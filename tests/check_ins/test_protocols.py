"""Protocol documents: the shipped defaults load; a bad document stops start-up; overrides."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from backend.domain.check_ins import protocols
from backend.domain.check_ins.protocols import (
    MODALITIES,
    ProtocolError,
    apply_override,
    decode_override,
    decode_protocol,
    default_protocol,
    shipped_protocols,
)


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "test",
        "version": "1.0.0",
        "modality": "n2o",
        "source": "test",
        "defaults": {"reminders": ["PT12H"], "missedFlagAfter": "PT48H"},
        "afterSession": [
            {"id": "2h", "label": "+2 h", "offset": "PT2H", "opens": "PT1H", "closes": "PT4H",
             "instruments": ["side-effects"]},
        ],
    }  # fmt: skip
    base.update(changes)
    return base


def step(**changes: Any) -> dict[str, Any]:
    base = {"id": "x", "label": "x", "offset": "P1D", "opens": "PT18H", "closes": "PT36H",
            "instruments": ["phq9"]}  # fmt: skip
    base.update(changes)
    return base


def decode(doc: dict[str, Any]) -> protocols.Protocol:
    return decode_protocol(json.dumps(doc).encode(), "test.json")


def test_every_modality_has_a_shipped_default() -> None:
    assert set(shipped_protocols()) == set(MODALITIES)
    assert default_protocol("n2o").step("day-7") is not None
    assert default_protocol("n2o").step("nope") is None
    n2o = default_protocol("n2o")
    assert n2o.defaults.reminders == (timedelta(hours=12),)
    assert n2o.defaults.missed_flag_after == timedelta(hours=48)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"id": "Bad Id"}, "id 'Bad Id'"),
        ({"version": "1"}, "MAJOR.MINOR.PATCH"),
        ({"defaults": {"reminders": ["PT1H", "PT1H"], "missedFlagAfter": "PT0S"}}, "distinct"),
        ({"defaults": {"reminders": [], "missedFlagAfter": "PT0S"}}, "missedFlagAfter"),
        ({"afterSession": [step(id="Bad")]}, "step id"),
        ({"afterSession": [step(opens="P2D")]}, "close after it opens"),
        ({"afterSession": [step(offset="P2D")]}, "inside the window"),
        ({"afterSession": [step(instruments=[])]}, "at least one instrument"),
        ({"afterSession": [step(instruments=["phq9", "phq9"])]}, "listed twice"),
        ({"afterSession": [step(instruments=["c-ssrs"])]}, "unknown instrument c-ssrs"),
        ({"afterSession": [step(instruments=["madrs"])]}, "clinician-rated"),
        ({"afterSession": [step(reminders=["-PT1H"])]}, "reminder delays"),
        ({"afterSession": [step(courseWeeks={"first": 0})]}, "course weeks"),
        ({"afterSession": [step(courseWeeks={"first": 3, "last": 2})]}, "course weeks"),
        ({"afterSession": [step(id="a"), step(id="a")]}, "defined twice"),
        ({"afterSession": [step(id="a", offset="P1D"), step(id="b", offset="PT20H")]}, "sorted"),
        ({"afterSession": [step(anchor="session_start")]}, "open after the session"),
        ({"afterSession": [step(anchor="course_start")]}, "must repeat"),
        ({"afterSession": [step(repeat={"every": "PT0S", "through": "P9D"})]}, "positive"),
        ({"afterSession": [step(repeat={"every": "PT6H", "through": "P9D"})]}, "wider"),
        ({"afterSession": [step(repeat={"every": "P7D"})]}, "without an end"),
        ({"afterSession": [step(repeat={"every": "P7D", "through": "PT1H"})]}, "end before"),
        ({"baseline": [step()]}, "count back from the session start"),
        (
            {"preSession": [step(anchor="session_start", offset="-PT2H", opens="-PT3H",
                                 closes="PT0S", stopsAtNextSession=True)]},
            "neither repeat",
        ),
        ({"afterSession": [step(substitution={"replace": "gad7", "use": "qids-sr16",
                                               "whenOlderThan": "P7D"})]}, "does not ask"),
        ({"afterSession": [step(instruments=["phq9", "gad7"], substitution={
            "replace": "phq9", "use": "gad7", "whenOlderThan": "PT0S"})]}, "already asks"),
        ({"afterSession": [step(substitution={"replace": "phq9", "use": "gad7",
                                               "whenOlderThan": "PT0S"})]}, "age must be positive"),
    ],
)  # fmt: skip
def test_a_clinically_inconsistent_protocol_is_refused(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode(document(**changes))


def test_unknown_keys_and_bad_shapes_are_refused() -> None:
    with pytest.raises(ProtocolError, match=r"test\.json"):
        decode(document(extra=1))
    with pytest.raises(ProtocolError, match=r"override\.json"):
        decode_override(b"{}", "override.json")


OVERRIDE = {
    "id": "clinic-n2o",
    "version": "2.0.0",
    "extends": {"id": "n2o-default", "version": "1.0.0"},
    "source": "Clinic X, 2025",
    "defaults": {"reminders": ["PT6H"], "missedFlagAfter": "PT24H"},
    "remove": ["weekly"],
    "steps": {
        "afterSession": [
            {"id": "2h", "label": "+3 h", "offset": "PT3H", "opens": "PT2H", "closes": "PT5H",
             "priority": "high", "instruments": ["side-effects"]},
            {"id": "day-10", "label": "Day 10", "offset": "P10D", "opens": "P9D",
             "closes": "P11D", "instruments": ["gad7"]},
        ]
    },
}  # fmt: skip


def test_a_clinic_override_replaces_adds_and_removes_steps() -> None:
    override = decode_override(json.dumps(OVERRIDE).encode(), "clinic.json")
    merged = apply_override(default_protocol("n2o"), override)
    assert (merged.id, merged.version) == ("clinic-n2o", "2.0.0")
    assert merged.defaults.reminders == (timedelta(hours=6),)
    assert merged.step("weekly") is None
    two_hours = merged.step("2h")
    assert two_hours is not None
    assert two_hours.offset == timedelta(hours=3)
    after = [s.id for s in merged.after_session]
    assert after == ["mnsi-monthly", "2h", "24h", "day-3", "day-7", "day-10", "day-14"]
    assert merged.baseline == default_protocol("n2o").baseline
    assert "Clinic X" in merged.source


def test_an_override_without_defaults_keeps_the_base_defaults() -> None:
    plain = {k: v for k, v in OVERRIDE.items() if k != "defaults"}
    merged = apply_override(
        default_protocol("n2o"), decode_override(json.dumps(plain).encode(), "c.json")
    )
    assert merged.defaults == default_protocol("n2o").defaults


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"extends": {"id": "n2o-default", "version": "0.9.0"}}, "not n2o-default@1.0.0"),
        ({"remove": ["nope"]}, "unknown steps"),
        ({"remove": [], "steps": {"preSession": [step(id="2h")]}}, "cannot move"),
        ({"steps": {"afterSession": [step(id="24h", instruments=["nope"])]}}, "unknown instrument"),
        # Far beyond any follow-up: a typo that would overflow date arithmetic when planning.
        (
            {
                "steps": {
                    "afterSession": [
                        step(offset="P999999D", opens="P999998D", closes="P999999999D")
                    ]
                }
            },
            "within 400 days",
        ),
        ({"defaults": {"reminders": ["P9999D"], "missedFlagAfter": "PT48H"}}, "must not exceed"),
    ],
)
def test_a_bad_override_is_refused(changes: dict[str, Any], problem: str) -> None:
    override = decode_override(json.dumps({**OVERRIDE, **changes}).encode(), "c.json")
    with pytest.raises(ProtocolError, match=problem):
        apply_override(default_protocol("n2o"), override)


def test_an_override_may_move_a_step_it_removes() -> None:
    moved = step(id="pre-session", anchor="session_start", offset="-PT2H", opens="-PT3H",
                 closes="PT0S")  # fmt: skip
    changes = {"remove": ["pre-session"], "steps": {"baseline": [moved]}}
    override = decode_override(json.dumps({**OVERRIDE, **changes}).encode(), "c.json")
    merged = apply_override(default_protocol("n2o"), override)
    assert [s.id for s in merged.baseline] == ["baseline", "pre-session"]
    assert merged.pre_session == ()


def test_loading_refuses_a_missing_or_duplicate_default(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "protocols"
    folder.mkdir()
    n2o = msgspec.json.encode(default_protocol("n2o"))
    (folder / "a.json").write_bytes(n2o)
    (folder / "README.txt").write_text("not a protocol")

    class Package:
        def joinpath(self, name: str) -> Any:
            return tmp_path / name

    # The module's own name for importlib.resources (not re-exported).
    monkeypatch.setattr(protocols.resources, "files", lambda _package: Package())  # type: ignore[attr-defined]
    protocols.shipped_protocols.cache_clear()
    try:
        with pytest.raises(ProtocolError, match="no default protocol"):
            shipped_protocols()
        (folder / "b.json").write_bytes(n2o)
        with pytest.raises(ProtocolError, match="a second default for n2o"):
            shipped_protocols()
    finally:
        protocols.shipped_protocols.cache_clear()
