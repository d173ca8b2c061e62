"""Alerts raised by submissions, stored in the submission's own transaction (both databases)."""

from datetime import timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.alerts import store
from backend.domain.alerts.evaluation import evaluate_patient, evaluate_recent_patients
from backend.domain.alerts.holds import n2o_hold_for
from tests.alerts.stored import (
    OUTBOX,
    RESPONSES,
    add_course_with_session,
    alerts_of,
    audit_actions,
    count,
    neuro,
    occurrences_for,
    outbox_for,
    phq9,
    submit,
)
from tests.identity.conftest import MovableClock, World, runtime_of


async def test_a_positive_suicide_item_raises_an_alert_on_every_submission(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    clinician = world.staff["clinician_a"]

    first = await submit(api, clock, patient, "phq9", phq9(8, item9=1))
    assert first.safety is not None  # the crisis screen comes back with the submission
    assert first.patient_actions == ("show_crisis_resources",)
    clock.advance(minutes=5)
    second = await submit(api, clock, patient, "phq9", phq9(8, item9=2))
    assert second.patient_actions == ("show_crisis_resources",)

    alerts = await alerts_of(api, patient.id)
    # Never merged: each positive submission is its own alert (clinical-spec §5.3 rule 6).
    assert [(a.kind, a.severity, a.status) for a in alerts] == [
        ("SUICIDALITY", "priority", "open"),
        ("SUICIDALITY", "urgent", "open"),
    ]
    assert alerts[0].sla_minutes == 480
    assert alerts[1].sla_minutes == 60
    assert alerts[1].sla_due_at == clock.now() + timedelta(minutes=60)
    assert alerts[0].parameter_version == "interlude-default@1.2.0"
    assert alerts[0].rule_id == "suicidality@1.1.0"
    for alert, urgency in zip(alerts, ("normal", "high"), strict=True):
        messages = await outbox_for(api, alert.id)
        # The patient has no care team: every active clinician of the clinic hears of it.
        assert [(m.kind, m.recipient_type, m.recipient_id, m.urgency) for m in messages] == [
            ("alert", "staff", str(clinician.id), urgency)
        ]
        assert "alert.open" in await audit_actions(api, alert.id)


async def test_the_alert_commits_with_the_submission_or_not_at_all(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    await submit(api, clock, patient, "phq9", phq9(8, item9=3), commit=False)
    assert await alerts_of(api, patient.id) == []
    assert await count(api, OUTBOX) == 0
    # Nor is a submission without an alert stored when its caller rolls back: only the HTTP
    # route (its whole unit of work) may store one at once.
    await submit(api, clock, patient, "phq9", phq9(4), commit=False)
    assert await count(api, RESPONSES) == 0

    await submit(api, clock, patient, "phq9", phq9(8, item9=3))
    assert [a.kind for a in await alerts_of(api, patient.id)] == ["SUICIDALITY"]


async def test_a_skipped_suicide_item_is_re_asked_then_becomes_a_clinician_task(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient, other = world.patients["patient_a"], world.patients["patient_a2"]
    runtime = runtime_of(api)

    skipped = await submit(api, clock, patient, "phq9", phq9(6, item9=None))
    assert skipped.reask_items == ("phq9-9",)
    assert skipped.patient_actions == ("reask_suicide_item",)
    assert await alerts_of(api, patient.id) == []
    [reask] = await occurrences_for(api, patient.id)
    assert (reask.kind, reask.audience, reask.alert_id) == ("SUICIDE_ITEM_REASK", "patient", None)

    # The other patient answers the re-ask in time: no task for them.
    await submit(api, clock, other, "phq9", phq9(6, item9=None))
    clock.advance(minutes=10)
    answered = await submit(api, clock, other, "phq9", phq9(6, item9=0))
    assert answered.patient_actions == ()

    clock.advance(minutes=61)
    await evaluate_recent_patients(runtime.require_sessionmaker(), runtime.keyring, now=clock.now())
    alerts = await alerts_of(api, patient.id)
    assert [(a.kind, a.severity) for a in alerts] == [("SUICIDE_ITEM_UNANSWERED", "priority")]
    assert await alerts_of(api, other.id) == []
    # The timer acts once on each trigger, however often it runs.
    await evaluate_recent_patients(runtime.require_sessionmaker(), runtime.keyring, now=clock.now())
    assert len(await alerts_of(api, patient.id)) == 1


async def test_later_triggers_attach_to_the_open_alert_of_their_kind(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    clinician = world.staff["clinician_a"]
    runtime = runtime_of(api)

    first = await submit(api, clock, patient, "n2o-neuro", neuro("NEURO-1"))
    assert first.patient_actions == ()
    alerts = {a.kind: a for a in await alerts_of(api, patient.id)}
    assert {k: a.severity for k, a in alerts.items()} == {
        "N2O_NEURO_SYMPTOMS": "high",
        "HAEMATOLOGICAL_MONITORING_DUE": "routine",
    }
    symptoms = alerts["N2O_NEURO_SYMPTOMS"]
    # HIGH holds the next N2O session until a clinician clears it (clinical-spec §5.1).
    async with runtime.require_sessionmaker()() as session:
        hold = await n2o_hold_for(session, patient.id)
    assert hold is not None
    assert hold.alert_id == symptoms.id

    acknowledged = await api.post(
        f"/api/v1/alerts/{symptoms.id}/acknowledge", headers=clinician.headers
    )
    assert acknowledged.status_code == 200, acknowledged.text

    clock.advance(hours=2)
    await submit(api, clock, patient, "n2o-neuro", neuro("NEURO-2"))
    alerts = {a.kind: a for a in await alerts_of(api, patient.id)}
    assert len(alerts) == 2
    symptoms = alerts["N2O_NEURO_SYMPTOMS"]
    assert (symptoms.occurrence_count, symptoms.status, symptoms.severity) == (
        2,
        "acknowledged",
        "high",
    )
    assert alerts["HAEMATOLOGICAL_MONITORING_DUE"].occurrence_count == 2
    assert len(await outbox_for(api, symptoms.id)) == 1  # same news is not sent again

    clock.advance(hours=2)
    urgent = await submit(api, clock, patient, "n2o-neuro", neuro("NEURO-4"))
    assert urgent.patient_actions == ("advise_same_day_medical_assessment",)
    symptoms = {a.kind: a for a in await alerts_of(api, patient.id)}["N2O_NEURO_SYMPTOMS"]
    # Worse news reopens the acknowledged alert with the urgent service level, and goes out.
    assert (symptoms.occurrence_count, symptoms.status, symptoms.severity) == (3, "open", "urgent")
    assert symptoms.next_escalation_at == clock.now() + timedelta(minutes=60)
    assert [m.urgency for m in await outbox_for(api, symptoms.id)] == ["normal", "high"]
    occurrences = [
        o for o in await occurrences_for(api, patient.id) if o.kind == "N2O_NEURO_SYMPTOMS"
    ]
    assert [o.alert_id for o in occurrences] == [symptoms.id] * 3
    assert len({o.occurrence_key for o in occurrences}) == 3
    async with runtime.require_sessionmaker()() as session:
        still = await n2o_hold_for(session, patient.id)
    assert still == hold  # one hold, set by the first trigger

    # Milder news later is evidence, never a downgrade: the alert stays urgent and on time
    # (within its hour, so that no escalation step moves the timer meanwhile).
    clock.advance(minutes=30)
    await submit(api, clock, patient, "n2o-neuro", neuro("NEURO-1"))
    milder = {a.kind: a for a in await alerts_of(api, patient.id)}["N2O_NEURO_SYMPTOMS"]
    assert (milder.occurrence_count, milder.status, milder.severity) == (4, "open", "urgent")
    assert milder.next_escalation_at == symptoms.next_escalation_at
    assert len(await outbox_for(api, symptoms.id)) == 2

    # Evaluating again finds nothing new: the engine's repeats are recognised.
    before = len(await occurrences_for(api, patient.id))
    async with runtime.require_sessionmaker()() as session:
        notices = await evaluate_patient(
            session,
            runtime.keyring,
            patient_id=patient.id,
            clinic_id=patient.clinic_id,
            now=clock.now(),
        )
        await session.commit()
    assert notices == []
    assert len(await occurrences_for(api, patient.id)) == before


async def test_rebound_is_found_in_stored_responses_and_sessions(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    start = clock.now() - timedelta(days=12)
    await add_course_with_session(api, patient, modality="iv_ketamine", start=start, minutes=40)

    for days, total in ((-2, 20), (1, 5), (7, 14)):
        await submit(
            api, clock, patient, "phq9", phq9(total), authored=start + timedelta(days=days)
        )
    alerts = await alerts_of(api, patient.id)
    assert [(a.kind, a.severity) for a in alerts] == [("REBOUND_CANDIDATE", "info")]
    candidate = alerts[0]
    assert candidate.sla_due_at is None
    assert await outbox_for(api, candidate.id) == []

    await submit(api, clock, patient, "phq9", phq9(15), authored=start + timedelta(days=10))
    by_kind = {a.kind: a for a in await alerts_of(api, patient.id)}
    # Response (5 <= 10 = half of B0) lost at two scores 3 days apart is LOSS_OF_RESPONSE too.
    assert {k: a.severity for k, a in by_kind.items()} == {
        "REBOUND_CANDIDATE": "info",
        "REBOUND_CONFIRMED": "routine",
        "LOSS_OF_RESPONSE": "routine",
    }
    # The confirming score is reported as REBOUND_CONFIRMED, not as a second candidate.
    assert by_kind["REBOUND_CANDIDATE"].occurrence_count == 1
    confirmed = by_kind["REBOUND_CONFIRMED"]
    assert (confirmed.severity, confirmed.rule_id) == ("routine", "rebound@1.2.0")
    assert [m.kind for m in await outbox_for(api, confirmed.id)] == ["alert"]


async def test_n2o_exposure_is_evaluated_from_stored_sessions(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    runtime = runtime_of(api)
    # 25 hours of N2O in one (long, unrealistic) session passes the 24 h SmPC limit on its own.
    await add_course_with_session(
        api, patient, modality="n2o", start=clock.now() - timedelta(days=2), minutes=25 * 60
    )
    await evaluate_recent_patients(runtime.require_sessionmaker(), runtime.keyring, now=clock.now())
    [alert] = await alerts_of(api, patient.id)
    assert (alert.kind, alert.severity) == ("HAEMATOLOGICAL_MONITORING_DUE", "routine")


async def test_withdrawn_patients_are_not_evaluated(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    runtime = runtime_of(api)
    await submit(api, clock, patient, "phq9", phq9(6, item9=None))
    async with runtime.require_sessionmaker()() as session:
        connection = await session.connection()
        await connection.execute(
            store._PATIENTS.update()
            .where(store._PATIENTS.c.id == patient.id)
            .values(status="withdrawn")
        )
        await session.commit()
    clock.advance(hours=2)
    await evaluate_recent_patients(runtime.require_sessionmaker(), runtime.keyring, now=clock.now())
    assert await alerts_of(api, patient.id) == []


async def test_seen_occurrence_keys_are_exactly_the_patients_stored_ones(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    # Evaluation acts only on keys this returns nothing for; an insert conflict would hide a
    # wrong answer here from every behaviour test, so it is checked directly.
    patient, other = world.patients["patient_a"], world.patients["patient_a2"]
    await submit(api, clock, patient, "phq9", phq9(6, item9=None))
    await submit(api, clock, other, "n2o-neuro", neuro("NEURO-1"))
    mine = [o.occurrence_key for o in await occurrences_for(api, patient.id)]
    theirs = [o.occurrence_key for o in await occurrences_for(api, other.id)]
    assert mine
    assert theirs
    asked = [*mine, *theirs, "never-seen", 'it\'s "quoted"', mine[0]]
    async with runtime_of(api).require_sessionmaker()() as session:
        connection = await session.connection()
        assert await store.seen_occurrence_keys(connection, patient.id, asked) == set(mine)
        assert await store.seen_occurrence_keys(connection, other.id, asked) == set(theirs)
        assert await store.seen_occurrence_keys(connection, patient.id, ["never-seen"]) == set()
        assert await store.seen_occurrence_keys(connection, patient.id, []) == set()
