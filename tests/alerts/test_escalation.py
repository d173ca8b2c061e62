"""Escalation of unacknowledged alerts with a manual clock, including across a restart."""

import asyncio
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.config import Settings
from backend.domain.alerts.escalation import escalate_due_alerts, escalated_severity
from backend.identity.roles import Role
from tests.alerts.stored import alerts_of, audit_actions, neuro, outbox_for, phq9, submit
from tests.identity.conftest import (
    MovableClock,
    World,
    _test_engines,
    build_world,
    make_staff,
    runtime_of,
)


async def _escalate(api: AsyncTestClient[Litestar], clock: MovableClock) -> None:
    """Two instances' escalation passes at once, both finished before the test looks; each step
    must still happen once. The app's own timer is stopped first: its pass could hold the due
    alert (claimed, not yet committed) while these skip it, and the step would land just after
    the test looked (seen once on a loaded machine)."""
    runtime = runtime_of(api)
    if runtime.timers.running:
        await runtime.timers.shutdown()
    sessions = runtime.require_sessionmaker()
    await asyncio.gather(
        escalate_due_alerts(sessions, now=clock.now()),
        escalate_due_alerts(sessions, now=clock.now()),
    )


async def _escalations(api: AsyncTestClient[Litestar], alert_id: object) -> list[str]:
    messages = await outbox_for(api, alert_id)  # type: ignore[arg-type]
    return [m.recipient_id for m in messages if m.kind == "alert_escalation"]


async def test_unacknowledged_alerts_escalate_along_the_on_call_list(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin, first = world.staff["admin_a"], world.staff["clinician_a"]
    second = await make_staff(api, Role.CLINICIAN, world.clinic_a, "doc2.a@example.org")
    on_call = await api.put(
        "/api/v1/clinic/alert-on-call",
        headers=admin.headers,
        json={"staffIds": [str(second.id), str(first.id)]},
    )
    assert on_call.status_code == 200, on_call.text

    await submit(api, clock, world.patients["patient_a"], "phq9", phq9(8, item9=1))
    await submit(api, clock, world.patients["patient_a2"], "phq9", phq9(8, item9=1))
    [waiting] = await alerts_of(api, world.patients["patient_a"].id)
    [seen] = await alerts_of(api, world.patients["patient_a2"].id)
    assert waiting.sla_minutes == 480  # PRIORITY: review the same working day
    acknowledged = await api.post(f"/api/v1/alerts/{seen.id}/acknowledge", headers=first.headers)
    assert acknowledged.status_code == 200

    # Each step goes to the next person, and (clinical-spec §5.3 rule 4) raises a suicidality
    # alert to the next tier, whose shorter service level times the next step.
    expected: list[str] = []
    steps = (
        (480, second.id, "urgent", 60),
        (60, first.id, "emergency", 15),
        (15, admin.id, "emergency", 15),
    )
    for level, (wait, recipient, tier, sla) in enumerate(steps, start=1):
        clock.advance(minutes=wait - 1)
        await _escalate(api, clock)
        assert len(await _escalations(api, waiting.id)) == level - 1, "escalated before its time"
        clock.advance(minutes=1)
        await _escalate(api, clock)
        expected.append(str(recipient))
        assert await _escalations(api, waiting.id) == expected
        [row] = await alerts_of(api, world.patients["patient_a"].id)
        assert row.escalation_level == level
        assert row.status == "open"
        assert row.severity == tier
        assert row.sla_minutes == sla
    # After the clinic admins there is nobody further: the alert stays open, the timer stops.
    assert row.next_escalation_at is None
    clock.advance(days=3)
    await _escalate(api, clock)
    assert await _escalations(api, waiting.id) == expected
    actions = await audit_actions(api, waiting.id)
    assert actions.count("alert.escalate") == 3
    assert actions.count("alert.severity_raised") == 2
    messages = await outbox_for(api, waiting.id)
    assert [m.urgency for m in messages if m.kind == "alert_escalation"] == ["high"] * 3

    # The acknowledged alert never escalated.
    assert await _escalations(api, seen.id) == []
    [seen_now] = await alerts_of(api, world.patients["patient_a2"].id)
    assert seen_now.escalation_level == 0


async def test_an_escalation_due_while_the_service_was_down_fires_after_restart(
    settings: Settings, clock: MovableClock
) -> None:
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as first_run:
        world = await build_world(first_run, clock)
        patient = world.patients["patient_a"]
        await submit(first_run, clock, patient, "phq9", phq9(8, item9=2))
        [alert] = await alerts_of(first_run, patient.id)
        assert alert.next_escalation_at == clock.now() + timedelta(minutes=60)
    engine = _test_engines.pop(id(first_run), None)
    assert engine is not None
    await engine.dispose()

    clock.advance(minutes=90)  # the service is down when the urgent alert's hour runs out

    async with AsyncTestClient(app=create_app(settings, clock=clock)) as second_run:
        try:
            # The timers run once at start; no request and no direct call is needed.
            for _ in range(100):
                [row] = await alerts_of(second_run, patient.id)
                if row.escalation_level:
                    break
                await asyncio.sleep(0.1)
            assert row.escalation_level == 1
            # No on-call list: the clinic admins are the escalation.
            assert await _escalations(second_run, alert.id) == [str(world.staff["admin_a"].id)]
            messages = await outbox_for(second_run, alert.id)
            assert {m.urgency for m in messages} == {"high"}
        finally:
            engine = _test_engines.pop(id(second_run), None)
            if engine is not None:
                await engine.dispose()


async def test_without_an_on_call_list_the_admins_hear_each_rise_of_tier(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin = world.staff["admin_a"]
    patient = world.patients["patient_a"]
    await submit(api, clock, patient, "phq9", phq9(8, item9=1))
    [alert] = await alerts_of(api, patient.id)
    assert (alert.severity, alert.sla_minutes) == ("priority", 480)
    for wait, tier in ((480, "urgent"), (60, "emergency")):
        clock.advance(minutes=wait)
        await _escalate(api, clock)
        [row] = await alerts_of(api, patient.id)
        assert (row.severity, row.escalation_level) == (tier, 1)
    assert await _escalations(api, alert.id) == [str(admin.id)] * 2
    assert row.next_escalation_at is None  # the top tier, and nobody further
    clock.advance(days=1)
    await _escalate(api, clock)
    assert len(await _escalations(api, alert.id)) == 2


async def test_escalation_leaves_other_alerts_at_the_tier_their_rules_gave(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    await submit(api, clock, patient, "n2o-neuro", neuro("NEURO-1"))

    async def neuro_alert() -> Any:
        [found] = [a for a in await alerts_of(api, patient.id) if a.kind == "N2O_NEURO_SYMPTOMS"]
        return found

    alert = await neuro_alert()
    assert alert.severity == "high"
    clock.advance(minutes=alert.sla_minutes)
    await _escalate(api, clock)
    row = await neuro_alert()
    assert (row.severity, row.escalation_level, row.sla_minutes) == ("high", 1, alert.sla_minutes)
    assert "alert.severity_raised" not in await audit_actions(api, alert.id)


def test_suicidality_tiers_rise_one_step_per_escalation_and_stop_at_emergency() -> None:
    assert escalated_severity("SUICIDALITY", "priority") == "urgent"
    assert escalated_severity("SUICIDALITY", "urgent") == "emergency"
    assert escalated_severity("SUICIDALITY", "emergency") == "emergency"
    assert escalated_severity("SUICIDE_ITEM_UNANSWERED", "priority") == "urgent"
    for kind in ("N2O_NEURO_SYMPTOMS", "SEVERE_SCORE", "MISSED_CHECK_IN", "KETAMINE_MISUSE"):
        for tier in ("routine", "priority", "high", "urgent"):
            assert escalated_severity(kind, tier) == tier


async def test_urgent_alerts_reach_the_first_on_call_person_at_once(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin = world.staff["admin_a"]
    # An admin on call: not among the clinicians who get every alert of a patient without a team.
    on_call = await make_staff(api, Role.CLINIC_ADMIN, world.clinic_a, "oncall.a@example.org")
    saved = await api.put(
        "/api/v1/clinic/alert-on-call",
        headers=admin.headers,
        json={"staffIds": [str(on_call.id)]},
    )
    assert saved.status_code == 200, saved.text

    async def first_notified(patient_key: str, item9: int) -> set[str]:
        patient = world.patients[patient_key]
        await submit(api, clock, patient, "phq9", phq9(8, item9=item9))
        [alert] = await alerts_of(api, patient.id)
        return {m.recipient_id for m in await outbox_for(api, alert.id) if m.kind == "alert"}

    assert str(on_call.id) in await first_notified("patient_a", 2)  # URGENT
    assert str(on_call.id) not in await first_notified("patient_a2", 1)  # PRIORITY
