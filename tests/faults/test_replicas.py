"""Two ``interlude serve`` replicas on one private PostgreSQL cluster, under load:

- one replica is killed with SIGKILL and restarted: every submission that got a 2xx is stored
  exactly once (phones retry with the same Idempotency-Key, through the other replica); every
  SUICIDALITY alert those submissions raised (some answer PHQ-9 item 9 with 1) exists exactly
  once and its notification reached the clinician's channel, a signed webhook on loopback, at
  least once; and every due check-in is handed to the outbox exactly once (one push message per
  check-in and device); the dead replica's leases expire and the survivor sends what it held;
- PostgreSQL itself is restarted: both replicas become ready again and take submissions without
  anyone restarting them.

The cluster is private (initdb on a free port in a temp dir): the shared server on 5432 is never
restarted. These take about a minute each (a killed replica's outbox lease is 60 s), so they run
only when RUN_FAULT_TESTS=1 (CI should set it; not an INTERLUDE_* name, which tests/conftest.py
clears).
"""

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select

from backend.db.models.alert import Alert
from backend.db.models.outbox import OutboxMessage
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import CheckIn
from backend.domain.outbox.dispatcher import provider_key
from bench.common import (
    Database,
    PatientLogin,
    PrivateCluster,
    Process,
    WebhookReceiver,
    World,
    create_database,
    engine_for,
    enqueue_webhooks,
    interlude_serve,
    make_world,
    phq9_body,
    service_env,
)
from notifications.templates import MessageKind
from tests.check_ins.test_claim_concurrency import check_in_row

SUBMIT = "/api/v1/responses"
PHONES = 8
PATIENTS = 4
MESSAGES_PER_BATCH = 20
CHECK_INS_PER_BATCH = 10  # per patient
POSITIVE_EVERY = 4  # one submission in four answers the suicide item: a SUICIDALITY alert
ALERTS = Alert.__table__  # type: ignore[attr-defined]
CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]

pytestmark = [
    pytest.mark.faults,
    pytest.mark.postgres,
    pytest.mark.skipif(
        os.environ.get("RUN_FAULT_TESTS") != "1",
        reason="long fault test: set RUN_FAULT_TESTS=1 (CI does)",
    ),
]


@dataclass
class Deployment:
    cluster: PrivateCluster
    database: Database
    receiver: WebhookReceiver
    replicas: list[Process]
    world: World
    data_dir: Path


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    cluster = PrivateCluster().init()
    cluster.start()
    replicas: list[Process] = []
    try:
        database = create_database("postgresql", tmp_path / "db", cluster.admin_url)
        data_dir = tmp_path / "var"
        with WebhookReceiver() as receiver:
            config = receiver.write_config(tmp_path / "notifications.json")
            for name in ("a", "b"):
                replica = interlude_serve(
                    database.url,
                    data_dir,
                    log=tmp_path / f"replica-{name}.log",
                    instance_id=f"replica-{name}",
                    notifications_config=str(config),
                    timer_interval_seconds="0.5",
                    db_pool_size="5",
                )
                replicas.append(replica.start())
            world = make_world(
                replicas[0].base_url, service_env(database.url, data_dir), patients=PATIENTS
            )
            yield Deployment(cluster, database, receiver, replicas, world, data_dir)
    finally:
        for replica in replicas:
            replica.kill()
        cluster.destroy()


@dataclass
class Ledger:
    """What the phones know: keys acknowledged with a 2xx, keys given up on, and which keys
    carried a positive suicide item."""

    acknowledged: set[str] = field(default_factory=set)
    positive: set[str] = field(default_factory=set)
    abandoned: set[str] = field(default_factory=set)
    failures: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def _phone(
    clients: list[httpx.AsyncClient],
    patient: PatientLogin,
    ledger: Ledger,
    phone: int,
    until: float,
) -> None:
    """Submit one PHQ-9 after another, every ``POSITIVE_EVERY``-th with item 9 (thoughts of
    self-harm) at 1; on a transport error or 5xx retry the same key and body through the next
    replica (what the app does behind a load balancer), with a short backoff."""
    sent = 0
    while time.monotonic() < until:
        key = str(uuid.uuid4())
        body = phq9_body()
        if sent % POSITIVE_EVERY == phone % POSITIVE_EVERY:
            body = phq9_body({**dict.fromkeys(range(1, 9), 1), 9: 1})
            ledger.positive.add(key)
        for attempt in range(60):
            client = clients[(phone + sent + attempt) % len(clients)]
            try:
                response = await client.post(
                    SUBMIT,
                    json=body,
                    headers={**patient.headers, "Idempotency-Key": key},
                )
            except httpx.HTTPError:
                ledger.failures += 1
                await asyncio.sleep(0.2)
                continue
            ledger.statuses[response.status_code] = ledger.statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                ledger.acknowledged.add(key)
                break
            assert response.status_code >= 500, response.text  # a 4xx would be a real bug
            ledger.failures += 1
            await asyncio.sleep(0.2)
        else:
            ledger.abandoned.add(key)
        sent += 1


async def _stored_keys(database_url: str, patients: list[str]) -> dict[str, int]:
    table = QuestionnaireResponse.__table__  # type: ignore[attr-defined]
    engine = engine_for(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(table.c.idempotency_key, func.count())
                .where(table.c.patient_id.in_([uuid.UUID(p) for p in patients]))
                .group_by(table.c.idempotency_key)
            )
            return {str(key): int(count) for key, count in rows.all()}
    finally:
        await engine.dispose()


def _require_submissions(deployment: Deployment) -> None:
    schema = httpx.get(deployment.replicas[0].base_url + "/schema/openapi.json", timeout=10)
    if SUBMIT not in schema.json().get("paths", {}):
        pytest.skip("the submission route is not registered in this build")


def _wait_delivered(deployment: Deployment, expected: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = asyncio.run(_webhook_statuses(deployment.database.url))
        if (
            counts.get("sent", 0) == expected
            and len(set(deployment.receiver.received())) >= expected
        ):
            return counts
        time.sleep(0.5)
    return counts


def _alerts_to_the_clinician_webhook(deployment: Deployment) -> None:
    """The clinician takes alerts on the clinic's webhook (a pager endpoint), so the receiver
    on loopback is the real channel their alert notifications go to (chosen at send time)."""
    clinician = deployment.world.staff["clinician"]
    chosen = httpx.put(
        deployment.replicas[0].base_url + "/api/v1/staff/me/notification-preferences",
        json={"channel": "webhook", "webhook_endpoint": "ops", "on_call": True},
        headers=clinician.headers,
        timeout=10,
    )
    assert chosen.status_code == 200, chosen.text


@dataclass
class AlertReport:
    """The SUICIDALITY alerts of the stored positive submissions and their notifications."""

    expected: int
    """Stored submissions with a positive suicide item (each must raise its own alert)."""
    raised: dict[str, int]
    """Per expected alert (its dedup key): how many alerts carry it."""
    unexpected: int
    """SUICIDALITY alerts that no stored positive submission explains."""
    notifications: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Alert id -> (outbox status, the key the provider sees) of each of its notifications."""

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rows in self.notifications.values():
            for status, _key in rows:
                counts[status] = counts.get(status, 0) + 1
        return counts

    def undelivered(self, received: set[str]) -> int:
        """Alerts with a notification not yet sent, or none the receiver verified."""
        return sum(
            1
            for rows in self.notifications.values()
            if not rows
            or any(status != "sent" for status, _key in rows)
            or not any(key in received for _status, key in rows)
        )


async def _suicidality_alerts(
    database_url: str, positive: set[str], patients: list[str]
) -> AlertReport:
    responses = QuestionnaireResponse.__table__  # type: ignore[attr-defined]
    patient_ids = [uuid.UUID(p) for p in patients]
    engine = engine_for(database_url)
    try:
        async with engine.connect() as connection:
            stored = await connection.execute(
                select(responses.c.id, responses.c.patient_id).where(
                    responses.c.patient_id.in_(patient_ids),
                    responses.c.idempotency_key.in_(sorted(positive)),
                )
            )
            # Each positive submission is its own alert, whose dedup key names the response
            # (clinical-spec §5.3; `backend.domain.alerts.raising.raise_alert`).
            expected = {f"{patient}:SUICIDALITY:{response}" for response, patient in stored.all()}
            alerts = (
                await connection.execute(
                    select(ALERTS.c.id, ALERTS.c.dedup_key).where(
                        ALERTS.c.kind == "SUICIDALITY", ALERTS.c.patient_id.in_(patient_ids)
                    )
                )
            ).all()
            notifications: dict[str, list[tuple[str, str]]] = {str(a.id): [] for a in alerts}
            rows = await connection.execute(
                select(OUTBOX.c.alert_id, OUTBOX.c.status, OUTBOX.c.idempotency_key).where(
                    OUTBOX.c.alert_id.in_(list(notifications)),
                    OUTBOX.c.kind == MessageKind.ALERT.value,
                )
            )
            for alert_id, status, key in rows.all():
                notifications[str(alert_id)].append((str(status), provider_key(str(key))))
    finally:
        await engine.dispose()
    raised = dict.fromkeys(expected, 0)
    unexpected = 0
    for alert in alerts:
        if alert.dedup_key in raised:
            raised[alert.dedup_key] += 1
        else:
            unexpected += 1
    return AlertReport(
        expected=len(expected), raised=raised, unexpected=unexpected, notifications=notifications
    )


def _wait_alerts_delivered(deployment: Deployment, ledger: Ledger, timeout: float) -> AlertReport:
    deadline = time.monotonic() + timeout
    while True:
        report = asyncio.run(
            _suicidality_alerts(
                deployment.database.url,
                ledger.positive,
                [p.id for p in deployment.world.patients],
            )
        )
        received = set(deployment.receiver.received())
        if not report.undelivered(received) or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def _check_ledger(deployment: Deployment, ledger: Ledger) -> dict[str, int]:
    stored = asyncio.run(
        _stored_keys(deployment.database.url, [p.id for p in deployment.world.patients])
    )
    duplicates = {key: n for key, n in stored.items() if n != 1}
    missing = ledger.acknowledged - stored.keys()
    assert not duplicates, f"stored more than once: {len(duplicates)}"
    assert not missing, f"acknowledged but not stored: {len(missing)}"
    assert not ledger.abandoned, f"phones gave up on {len(ledger.abandoned)} submissions"
    # Every stored row is one a phone sent (nothing invented, nothing doubled).
    assert stored.keys() <= ledger.acknowledged | ledger.abandoned
    return stored


@dataclass(frozen=True)
class Course:
    patient: str
    clinic: str
    course: str
    session: str


def _courses(deployment: Deployment) -> list[Course]:
    """Each patient's phone registers a push token and the clinician records a session a few days
    ahead (its own ladder is not due yet): the check-ins below hang off that course."""
    base = deployment.replicas[0].base_url
    clinician = deployment.world.staff["clinician"]
    courses = []
    for number, patient in enumerate(deployment.world.patients):
        device = httpx.put(
            base + "/api/v1/me/device",
            json={"push_token": f"fault-test-token-{number}"},
            headers=patient.headers,
            timeout=10,
        )
        assert device.status_code == 200, device.text
        recorded = httpx.post(
            base + f"/api/v1/patients/{patient.id}/sessions",
            json={
                "modality": "n2o",
                "planned_start": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
                "minutes": 60,
                "n2o_concentration_percent": 50,
            },
            headers=clinician.headers,
            timeout=10,
        )
        assert recorded.status_code == 201, recorded.text
        body = recorded.json()
        courses.append(
            Course(patient.id, deployment.world.clinic_id, body["course_id"], body["id"])
        )
    return courses


async def _due_check_ins(database_url: str, courses: list[Course], batch: int) -> list[str]:
    """``CHECK_INS_PER_BATCH`` check-ins per patient, due minutes ago with their windows open, as
    the planner writes them; returns their ids."""
    now = datetime.now(UTC)
    rows = [
        check_in_row(
            uuid.UUID(c.patient),
            uuid.UUID(c.clinic),
            uuid.UUID(c.course),
            uuid.UUID(c.session),
            batch * 100 + n,
            now,
        )
        for c in courses
        for n in range(CHECK_INS_PER_BATCH)
    ]
    engine = engine_for(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(CHECK_INS), rows)
    finally:
        await engine.dispose()
    return [str(row["id"]) for row in rows]


async def _check_in_hand_over(database_url: str, ids: list[str]) -> tuple[dict[str, int], int]:
    """(status -> count of those check-ins, the largest number of push messages for one)."""
    engine = engine_for(database_url)
    wanted = [uuid.UUID(i) for i in ids]
    try:
        async with engine.connect() as connection:
            statuses = await connection.execute(
                select(CHECK_INS.c.status, func.count())
                .where(CHECK_INS.c.id.in_(wanted))
                .group_by(CHECK_INS.c.status)
            )
            per_check_in = await connection.execute(
                select(OUTBOX.c.check_in_id, func.count())
                .where(
                    OUTBOX.c.kind == MessageKind.CHECK_IN_DUE.value,
                    OUTBOX.c.check_in_id.in_(ids),
                    # The hand-over's own push, not the fallback's later re-send (its own key).
                    OUTBOX.c.idempotency_key.not_like("%:resend:%"),
                )
                .group_by(OUTBOX.c.check_in_id)
            )
            counts = {str(k): int(v) for k, v in per_check_in.all()}
            missing = set(ids) - counts.keys()
            most = max(counts.values(), default=0)
            return {str(k): int(v) for k, v in statuses.all()}, (0 if missing else int(most))
    finally:
        await engine.dispose()


async def _webhook_statuses(database_url: str) -> dict[str, int]:
    # Check-in pushes have no provider here; the webhook messages are the delivery under test.
    engine = engine_for(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(OUTBOX.c.status, func.count())
                .where(OUTBOX.c.channel == "webhook")
                .group_by(OUTBOX.c.status)
            )
            return {str(status): int(count) for status, count in rows.all()}
    finally:
        await engine.dispose()


def test_sigkill_of_one_replica_loses_and_duplicates_nothing(deployment: Deployment) -> None:
    _require_submissions(deployment)
    victim, survivor = deployment.replicas
    ledger = Ledger()
    check_ins: list[str] = []
    courses = _courses(deployment)
    _alerts_to_the_clinician_webhook(deployment)
    deployment.receiver.delay = 0.3  # sends stay in flight long enough to be cut off

    async def scenario() -> None:
        clients = [httpx.AsyncClient(base_url=r.base_url, timeout=10) for r in deployment.replicas]
        until = time.monotonic() + 14
        patients = deployment.world.patients
        phones = [
            asyncio.create_task(_phone(clients, patients[n % len(patients)], ledger, n, until))
            for n in range(PHONES)
        ]
        try:
            url = deployment.database.url
            check_ins.extend(await _due_check_ins(url, courses, batch=1))
            await asyncio.sleep(3)
            check_ins.extend(await _due_check_ins(url, courses, batch=2))
            await asyncio.sleep(0.2)
            victim.kill()  # SIGKILL: no shutdown, leases and connections left behind
            await asyncio.sleep(3)
            check_ins.extend(await _due_check_ins(url, courses, batch=3))
            await asyncio.to_thread(victim.start)  # same instance id, same configuration
            await asyncio.gather(*phones)
        finally:
            for client in clients:
                await client.aclose()

    asyncio.run(scenario())
    assert survivor.popen is not None
    assert survivor.popen.poll() is None
    stored = _check_ledger(deployment, ledger)
    # Held leases expire (60 s) and the alerts are sent by whichever replica claims them.
    alerts = _wait_alerts_delivered(deployment, ledger, timeout=100)
    delivered = deployment.receiver.received()
    deadline = time.monotonic() + 30
    while True:
        check_in_statuses, most = asyncio.run(
            _check_in_hand_over(deployment.database.url, check_ins)
        )
        if check_in_statuses == {"sent": len(check_ins)} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    positive = len(ledger.positive & ledger.acknowledged)
    print(  # noqa: T201  (the counts issue 11 asks to see)
        f"\nSIGKILL: {len(ledger.acknowledged)} submissions acknowledged, {len(stored)} stored, "
        f"{ledger.failures} failed attempts retried, statuses {ledger.statuses}; "
        f"{positive} acknowledged with a positive suicide item, {alerts.expected} stored, "
        f"{sum(alerts.raised.values())} SUICIDALITY alerts for them "
        f"({sum(1 for n in alerts.raised.values() if n == 1)} exactly once, "
        f"{alerts.unexpected} unexplained); their notifications {alerts.statuses()}, "
        f"{len(set(delivered))} delivered to the clinician's webhook, "
        f"{len(delivered) - len(set(delivered))} duplicate deliveries, "
        f"{alerts.undelivered(set(delivered))} alerts undelivered; "
        f"{len(check_ins)} due check-ins: {check_in_statuses}, at most {most} push message(s) "
        "per check-in"
    )
    assert len(ledger.acknowledged) > 0
    assert positive > 0, "no submission raised an alert"
    # Every 2xx positive submission raised its alert, once; nothing else raised one.
    assert alerts.expected == positive
    assert all(n == 1 for n in alerts.raised.values()), alerts.raised
    assert alerts.unexpected == 0
    # Each alert told the clinician (one clinician: one notification per alert), and the
    # receiver verified at least one delivery of it.
    assert all(len(rows) == 1 for rows in alerts.notifications.values())
    assert alerts.statuses() == {"sent": positive}, alerts.statuses()
    assert alerts.undelivered(set(delivered)) == 0
    # Every due check-in was handed over, and exactly once (one device per patient).
    assert check_in_statuses == {"sent": len(check_ins)}, check_in_statuses
    assert most == 1


def test_postgres_restart_mid_load_recovers_without_manual_action(
    deployment: Deployment,
) -> None:
    _require_submissions(deployment)
    ledger = Ledger()
    keys: list[str] = []
    recovered_after: list[float] = []

    async def scenario() -> None:
        clients = [httpx.AsyncClient(base_url=r.base_url, timeout=10) for r in deployment.replicas]
        until = time.monotonic() + 16
        patients = deployment.world.patients
        phones = [
            asyncio.create_task(_phone(clients, patients[n % len(patients)], ledger, n, until))
            for n in range(PHONES)
        ]
        try:
            await asyncio.sleep(3)
            restarted = time.monotonic()
            await asyncio.to_thread(deployment.cluster.restart, "fast")
            for client in clients:  # both replicas ready again, nobody touched them
                deadline = time.monotonic() + 30
                while (await client.get("/readyz")).status_code != 200:
                    assert time.monotonic() < deadline, "a replica did not recover"
                    await asyncio.sleep(0.2)
            recovered_after.append(time.monotonic() - restarted)
            keys.extend(await enqueue_webhooks(deployment.database.url, MESSAGES_PER_BATCH))
            await asyncio.gather(*phones)
        finally:
            for client in clients:
                await client.aclose()

    asyncio.run(scenario())
    stored = _check_ledger(deployment, ledger)
    counts = _wait_delivered(deployment, len(keys), timeout=30)
    print(  # noqa: T201
        f"\nPostgreSQL restart: ready again {recovered_after[0]:.1f} s after the restart began; "
        f"{len(ledger.acknowledged)} acknowledged, {len(stored)} stored, {ledger.failures} "
        f"failed attempts retried, statuses {ledger.statuses}; outbox {counts}"
    )
    assert all(
        replica.popen is not None and replica.popen.poll() is None
        for replica in deployment.replicas
    )
    assert counts == {"sent": len(keys)}, counts
    # A database that is restarting is a 503 with Retry-After, never a 500.
    assert 500 not in ledger.statuses, ledger.statuses
