"""Recording, moving and cancelling sessions; merging ladders of sessions close together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from backend.domain.check_ins.plans import (
    ExistingCheckIn,
    PatientSchedulingContext,
    PlannedSession,
    PlanningError,
)
from backend.domain.check_ins.protocols import default_protocol
from backend.domain.check_ins.replanning import (
    ReplanDecision,
    apply_decision,
    replan,
    replan_for_patient,
)
from tests.check_ins.builders import PARIS, local, patient, session

N2O = default_protocol("n2o")
FIRST_END = local(PARIS, 2025, 6, 3, 14)


def record(
    existing: list[ExistingCheckIn],
    *sessions: PlannedSession,
    context: PatientSchedulingContext | None = None,
) -> list[ExistingCheckIn]:
    for planned in sessions:
        existing = apply_decision(existing, replan(existing, planned, N2O, context or patient()))
    return existing


def status_of(existing: list[ExistingCheckIn]) -> dict[str, str]:
    return {e.plan.key: e.status for e in existing}


def with_status(existing: list[ExistingCheckIn], key: str, status: str) -> list[ExistingCheckIn]:
    return [msgspec.structs.replace(e, status=status) if e.plan.key == key else e for e in existing]


def test_recording_a_session_inserts_its_ladder_and_recording_it_again_changes_nothing() -> None:
    s1 = session(ends_at=FIRST_END)
    decision = replan([], s1, N2O, patient())
    assert decision.update == ()
    assert decision.cancel == ()
    assert {p.step for p in decision.insert} >= {"2h", "24h", "day-3", "day-7"}
    existing = apply_decision([], decision)
    assert replan(existing, s1, N2O, patient()).is_empty


def test_moving_a_session_moves_only_what_was_not_sent() -> None:
    s1 = session(ends_at=FIRST_END)
    existing = with_status(record([], s1), "s1:2h", "answered")
    sent_before = next(e for e in existing if e.plan.key == "s1:2h")
    moved = session(ends_at=FIRST_END + timedelta(days=1))
    decision = replan(existing, moved, N2O, patient())
    assert "s1:2h" not in {p.key for p in (*decision.insert, *decision.update)}
    assert decision.insert == ()  # same steps, same keys
    after = apply_decision(existing, decision)
    assert next(e for e in after if e.plan.key == "s1:2h") == sent_before
    day_7 = next(e.plan for e in after if e.plan.key == "s1:day-7")
    assert day_7.due_at == local(PARIS, 2025, 6, 11, 14)
    assert replan(after, moved, N2O, patient()).is_empty


def test_cancelling_a_session_cancels_its_unsent_check_ins_only() -> None:
    s1 = session(ends_at=FIRST_END)
    existing = with_status(record([], s1), "s1:2h", "sent")
    existing = with_status(existing, "s1:24h", "missed")
    decision = replan(existing, session(ends_at=FIRST_END, cancelled=True), N2O, patient())
    assert decision.insert == decision.update == ()
    assert "s1:2h" not in decision.cancel
    assert "s1:24h" not in decision.cancel
    after = status_of(apply_decision(existing, decision))
    assert after["s1:2h"] == "sent"
    assert after["s1:24h"] == "missed"
    assert {s for k, s in after.items() if k not in ("s1:2h", "s1:24h")} == {"cancelled"}


def test_a_cancelled_then_restored_session_reuses_its_keys() -> None:
    s1 = session(ends_at=FIRST_END)
    existing = record([], s1, session(ends_at=FIRST_END, cancelled=True))
    decision = replan(existing, s1, N2O, patient())
    assert decision.insert == ()
    assert {p.key for p in decision.update} == {e.plan.key for e in existing}


def test_sessions_close_together_share_one_check_in_and_part_when_one_is_cancelled() -> None:
    # Twice-weekly N2O (Guimarães 2021): the second session's pre-session MADRS-S falls in the
    # first session's day-3 window: one check-in, in the intersection of the two windows.
    recent_phq9 = patient(last_answered_at={"phq9": local(PARIS, 2025, 6, 2, 9)})
    s1 = session(id="s1", ends_at=FIRST_END, next_starts_at=local(PARIS, 2025, 6, 6, 13))
    s2 = session(id="s2", ends_at=local(PARIS, 2025, 6, 6, 14))
    existing = record([], s1, s2, context=recent_phq9)
    plans = {e.plan.key: e.plan for e in existing}
    pre = plans["s2:pre-session"]
    assert plans["s1:day-3"].merged_into == "s2:pre-session"
    assert pre.absorbed == ("s1:day-3",)
    assert pre.instruments == ("madrs-s", "n2o-neuro")
    assert (pre.opens_at, pre.closes_at) == (
        local(PARIS, 2025, 6, 5, 14),  # day 3 opens at day 2
        local(PARIS, 2025, 6, 6, 13),  # pre-session closes at the session start
    )
    assert pre.due_at == local(PARIS, 2025, 6, 5, 14)
    cancel = replan(existing, msgspec.structs.replace(s2, cancelled=True), N2O, recent_phq9)
    assert "s1:day-3" in {p.key for p in cancel.update}
    restored = {e.plan.key: e for e in apply_decision(existing, cancel)}["s1:day-3"]
    assert restored.status == "pending"
    assert restored.plan.instruments == ("madrs-s",)
    assert (restored.plan.opens_at, restored.plan.closes_at) == (
        local(PARIS, 2025, 6, 5, 14),
        local(PARIS, 2025, 6, 7, 14),
    )
    assert restored.plan.absorbed == ()


def test_an_answered_instrument_is_not_asked_again_for_an_overlapping_window() -> None:
    s1 = session(id="s1", ends_at=FIRST_END, next_starts_at=local(PARIS, 2025, 6, 6, 13))
    existing = with_status(record([], s1), "s1:day-3", "answered")
    s2 = session(id="s2", ends_at=local(PARIS, 2025, 6, 6, 14))
    plans = {p.key: p for p in replan(existing, s2, N2O, patient()).insert}
    pre = plans["s2:pre-session"]
    assert pre.instruments == ("phq9", "n2o-neuro")  # MADRS-S already answered at day 3
    assert pre.merged_into is None


def test_a_check_in_fully_covered_by_a_sent_one_is_merged_into_it() -> None:
    s1 = session(id="s1", ends_at=FIRST_END, next_starts_at=local(PARIS, 2025, 6, 6, 13))
    existing = with_status(record([], s1), "s1:day-3", "sent")
    s2 = session(id="s2", ends_at=local(PARIS, 2025, 6, 6, 14))
    answered = patient(last_answered_at={"phq9": local(PARIS, 2025, 6, 3, 9)})
    plans = {p.key: p for p in replan(existing, s2, N2O, answered).insert}
    # pre-session asks MADRS-S + N2O-NEURO (PHQ-9 recent); only MADRS-S is covered.
    assert plans["s2:pre-session"].instruments == ("n2o-neuro",)
    s3 = session(id="s3", ends_at=local(PARIS, 2025, 6, 6, 14))
    existing = with_status(
        apply_decision(existing, replan(existing, s3, N2O, answered)), "s3:pre-session", "sent"
    )
    existing = [e for e in existing if e.plan.session_id != "s2"]
    again = {p.key: p for p in replan(existing, s2, N2O, answered).insert}
    assert again["s2:pre-session"].merged_into == "s1:day-3"
    assert again["s2:pre-session"].status == "merged"


def test_a_steps_no_longer_planned_are_cancelled_when_the_next_session_is_booked() -> None:
    s1 = session(id="s1", ends_at=FIRST_END)
    existing = record([], s1)
    booked = msgspec.structs.replace(s1, next_session_starts_at=local(PARIS, 2025, 6, 10, 13))
    decision = replan(existing, booked, N2O, patient())
    assert set(decision.cancel) == {"s1:day-14", "s1:mnsi-monthly#1"} | {
        f"s1:weekly#{n}" for n in range(1, 7)
    }


def test_a_time_zone_change_replaces_unsent_check_ins_in_the_new_quiet_hours() -> None:
    # Session ends 10:00 Paris (08:00 UTC): +24 h is 10:00 in Paris but 04:00 in New York.
    s1 = session(ends_at=local(PARIS, 2025, 6, 3, 10))
    existing = with_status(record([], s1), "s1:2h", "sent")
    moved = patient(zone="America/New_York")
    decision = replan_for_patient(existing, moved)
    updated = {p.key: p for p in decision.update}
    assert "s1:2h" not in updated
    assert updated["s1:24h"].due_at == datetime(2025, 6, 4, 12, tzinfo=UTC)  # 08:00 EDT
    assert decision.insert == ()
    assert decision.cancel == ()
    assert replan_for_patient(apply_decision(existing, decision), moved).is_empty


def test_replanning_refuses_inconsistent_inputs() -> None:
    s1 = session(ends_at=FIRST_END)
    existing = record([], s1)
    with pytest.raises(PlanningError, match="share an idempotency key"):
        replan([*existing, existing[0]], s1, N2O, patient())
    other = [
        msgspec.structs.replace(e, plan=msgspec.structs.replace(e.plan, patient_id="p2"))
        for e in existing
    ]
    with pytest.raises(PlanningError, match="another patient"):
        replan(other, s1, N2O, patient())


def test_an_empty_decision_is_empty() -> None:
    assert ReplanDecision().is_empty
    assert not ReplanDecision(cancel=("k",)).is_empty
