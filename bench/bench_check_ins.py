"""Check-in claim loop: lag from due time to hand-over to the outbox, and memory, at scale.

For each database (SQLite in a temporary directory; PostgreSQL when reachable, see
``bench/common.py``), ``scheduled`` check-ins are seeded (one session, course and push device per
patient, two check-ins each), almost all due days later, plus ``due`` check-ins falling due one by
one over the next ``window`` seconds. The real `CheckInTimers` then runs as the app runs it: a
pass every second (the app's tick), each pass one transaction that claims with a lease, enqueues
one CHECK_IN_DUE outbox message per device and marks the check-in sent.

- lag: for every check-in handed over, (commit of its pass) - (its due time), p50/p99/max;
  the issue's target is p99 ≤ 2 s;
- memory: tracemalloc's peak while the loop drains a backlog of 5,000 check-ins made due at
  once (traced apart from the lag phase, which tracing would slow); the loop reads a batch at a
  time, so the peak at 100,000 scheduled check-ins should match the peak at 10,000
  (``memory ratio`` ≈ 1).

``python -m bench.bench_check_ins [--scheduled N] [--due N] [--window S]``.
"""

import argparse
import asyncio
import json
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.models.clinic import Clinic
from backend.db.models.device import Device
from backend.db.models.patient import Patient
from backend.db.models.staff import StaffMember
from backend.db.models.treatment import CheckIn, TreatmentCourse, TreatmentSession
from backend.domain.check_ins.delivery import CheckInTimers
from backend.lib.ids import uuid7
from bench.common import create_database, engine_for, percentile, workdir

SCHEDULED: Final = 100_000
SMALL: Final = 10_000
DUE: Final = 1_500
WINDOW_SECONDS: Final = 15.0
TICK_SECONDS: Final = 1.0  # the app's check-in timer interval (backend/app.py)
PER_PATIENT: Final = 2
BACKLOG: Final = 5_000  # check-ins made due at once for the memory measurement
TARGET_P99_SECONDS: Final = 2.0

CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]


class _RecordingClock:
    """The system clock, remembering the last instant it gave (a pass's `now`)."""

    def __init__(self) -> None:
        self.last = datetime.now(UTC)

    def now(self) -> datetime:
        self.last = datetime.now(UTC)
        return self.last


def _check_in(
    patient: uuid.UUID,
    clinic: uuid.UUID,
    course: uuid.UUID,
    session: uuid.UUID,
    step: int,
    due: datetime,
) -> dict[str, Any]:
    opens, closes = due - timedelta(hours=1), due + timedelta(hours=12)
    return {
        "id": uuid7(),
        "idempotency_key": f"{session}:step-{step}",
        "patient_id": patient,
        "clinic_id": clinic,
        "course_id": course,
        "session_id": session,
        "protocol_id": "n2o-default",
        "protocol_version": "1.0.0",
        "step": f"step-{step}",
        "label": "bench",
        "status": "pending",
        "planned_priority": "normal",
        "planned_instruments": ["phq9"],
        "planned_opens_at": opens,
        "planned_closes_at": closes,
        "nominal_due_at": due,
        "reminder_delays_seconds": [43200],
        "missed_flag_after_seconds": 172800,
        "priority": "normal",
        "instruments": ["phq9"],
        "opens_at": opens,
        "closes_at": closes,
        "due_at": due,
        "during_quiet_hours": False,
        "reminders_at": [(due + timedelta(hours=12)).isoformat()],
        "missed_flag_at": due + timedelta(hours=48),
        "merged_into": None,
        "absorbed": [],
        "next_reminder_at": due + timedelta(hours=12),
        "reminders_sent": 0,
        "attempts": 0,
        "devices_notified": 0,
        "answered_instruments": [],
        "created_at": opens,
        "updated_at": opens,
    }


async def seed(engine: AsyncEngine, scheduled: int, due: int, t0: datetime, window: float) -> None:
    """`scheduled` check-ins in all; `due` of them fall due evenly over [t0, t0 + window)."""
    clinic, staff = uuid.uuid4(), uuid.uuid4()
    patients = scheduled // PER_PATIENT
    later = t0 + timedelta(days=3)
    async with engine.begin() as connection:
        await connection.execute(
            Clinic.__table__.insert(),  # type: ignore[attr-defined]
            [{"id": clinic, "name": f"bench-{clinic}", "created_at": t0}],
        )
        await connection.execute(
            StaffMember.__table__.insert(),  # type: ignore[attr-defined]
            [{"id": staff, "clinic_id": clinic, "role": "clinician", "created_at": t0}],
        )
    made = 0
    for first in range(0, patients, 2_000):
        ids = [uuid7() for _ in range(min(2_000, patients - first))]
        courses = {p: uuid7() for p in ids}
        sessions = {p: uuid7() for p in ids}
        rows = []
        for p in ids:
            for step in range(PER_PATIENT):
                if made < due:
                    at = t0 + timedelta(seconds=window * made / max(1, due))
                else:
                    at = later + timedelta(seconds=made % 86_400)
                rows.append(_check_in(p, clinic, courses[p], sessions[p], step, at))
                made += 1
        async with engine.begin() as connection:
            await connection.execute(
                Patient.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "id": p,
                        "clinic_id": clinic,
                        "status": "active",
                        "monitoring_consent": True,
                        "research_consent": False,
                        "consent_updated_at": t0,
                        "time_zone": "UTC",
                        "locale": "en",
                        "created_by": staff,
                        "created_at": t0,
                    }
                    for p in ids
                ],
            )
            await connection.execute(
                Device.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "id": uuid7(),
                        "patient_id": p,
                        "clinic_id": clinic,
                        "platform": "android",
                        "push_token_ciphertext": b"sealed",
                        "time_zone": "UTC",
                        "locale": "en",
                        "registered_at": t0,
                        "last_seen_at": t0,
                    }
                    for p in ids
                ],
            )
            await connection.execute(
                TreatmentCourse.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "id": courses[p],
                        "patient_id": p,
                        "clinic_id": clinic,
                        "modality": "n2o",
                        "protocol_id": "n2o-default",
                        "protocol_version": "1.0.0",
                        "status": "active",
                        "started_at": t0,
                        "created_at": t0,
                    }
                    for p in ids
                ],
            )
            await connection.execute(
                TreatmentSession.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "id": sessions[p],
                        "course_id": courses[p],
                        "patient_id": p,
                        "clinic_id": clinic,
                        "modality": "n2o",
                        "n2o_concentration_percent": 50,
                        "n2o_minutes": 60,
                        "planned_start_at": t0 - timedelta(days=1),
                        "planned_end_at": t0 - timedelta(days=1) + timedelta(hours=1),
                        "status": "completed",
                        "is_last_in_course": False,
                        "created_at": t0,
                        "updated_at": t0,
                    }
                    for p in ids
                ],
            )
            await connection.execute(CHECK_INS.insert(), rows)


async def measure(database_url: str, *, scheduled: int, due: int, window: float) -> dict[str, Any]:
    engine = engine_for(database_url)
    try:
        started = time.perf_counter()
        # The far-future bulk first, then the check-ins falling due in the window, timed from
        # when seeding is done (so none is already late when the loop starts).
        await seed(engine, scheduled - due, 0, datetime.now(UTC), window)
        t0 = datetime.now(UTC) + timedelta(seconds=2)
        await seed(engine, due, due, t0, window)
        seed_seconds = time.perf_counter() - started
        await asyncio.sleep(max(0.0, (t0 - datetime.now(UTC)).total_seconds()))
        clock = _RecordingClock()
        timers = CheckInTimers(engine, instance="bench", clock=clock, batch_size=200)
        lags: list[float] = []
        passes: list[float] = []
        end = t0 + timedelta(seconds=window + 2 * TICK_SECONDS)
        while datetime.now(UTC) < end:
            tick = time.perf_counter()
            while True:
                pass_started = time.perf_counter()
                one = await timers.run_once()
                committed = datetime.now(UTC)
                passes.append(time.perf_counter() - pass_started)
                if one.handed_over:
                    async with engine.connect() as connection:
                        dues = await connection.scalars(
                            # status first: the (status, due_at) index keeps this off a scan.
                            select(CHECK_INS.c.due_at).where(
                                CHECK_INS.c.status == "sent", CHECK_INS.c.sent_at == clock.last
                            )
                        )
                        lags.extend((committed - d).total_seconds() for d in dues.all())
                if one.handed_over < 200:
                    break
            await asyncio.sleep(max(0.0, TICK_SECONDS - (time.perf_counter() - tick)))
        peak = await _claim_peak(engine, timers, min(BACKLOG, scheduled - due))
        lags.sort()
        passes.sort()
        return {
            "scheduled": scheduled,
            "due_in_window": due,
            "handed_over": len(lags),
            "lag_p50_s": round(percentile(lags, 0.50), 3),
            "lag_p99_s": round(percentile(lags, 0.99), 3),
            "lag_max_s": round(lags[-1], 3) if lags else float("nan"),
            "pass_p50_ms": round(1000 * percentile(passes, 0.50), 2),
            "pass_p99_ms": round(1000 * percentile(passes, 0.99), 2),
            "claim_peak_kib": round(peak / 1024, 1),
            "seed_s": round(seed_seconds, 1),
        }
    finally:
        await engine.dispose()


async def _claim_peak(engine: AsyncEngine, timers: CheckInTimers, backlog: int) -> int:
    """Peak traced memory while draining a backlog of `backlog` check-ins made due now. Traced
    apart from the lag phase: tracemalloc slows Python several-fold and would inflate the lag."""
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        first = (
            select(CHECK_INS.c.id)
            .where(CHECK_INS.c.status == "pending")
            .order_by(CHECK_INS.c.due_at)
            .limit(backlog)
            .scalar_subquery()
        )
        await connection.execute(
            update(CHECK_INS).where(CHECK_INS.c.id.in_(first)).values(due_at=now)
        )
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        await timers.drain()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _suite(kind: str, scheduled: int, due: int, window: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    results = []
    for size in (min(SMALL, scheduled), scheduled):
        with workdir("interlude-bench-check-ins-") as directory:
            database = create_database(kind, directory)
            try:
                result = asyncio.run(
                    measure(database.url, scheduled=size, due=min(due, size), window=window)
                )
            finally:
                database.drop()
        results.append(result)
        rows.append(
            {
                "suite": "check_ins",
                "name": f"claim lag, {kind}, {size:,} scheduled",
                "database": kind,
                **result,
                "target_p99_s": TARGET_P99_SECONDS,
                "meets_target": result["lag_p99_s"] <= TARGET_P99_SECONDS,
            }
        )
    small, large = results[0], results[-1]
    rows.append(
        {
            "suite": "check_ins",
            "name": f"claim memory, {kind}, {large['scheduled']:,} vs {small['scheduled']:,}",
            "database": kind,
            "claim_peak_kib_small": small["claim_peak_kib"],
            "claim_peak_kib_large": large["claim_peak_kib"],
            "memory_ratio": round(large["claim_peak_kib"] / max(1.0, small["claim_peak_kib"]), 2),
        }
    )
    return rows


def run(
    scheduled: int = SCHEDULED, due: int = DUE, window: float = WINDOW_SECONDS
) -> list[dict[str, object]]:
    """Rows for SQLite, then PostgreSQL (a row saying why when it cannot be reached)."""
    rows = _suite("sqlite", scheduled, due, window)
    try:
        rows += _suite("postgresql", scheduled, due, window)
    except (OSError, RuntimeError) as error:
        rows.append(
            {
                "suite": "check_ins",
                "name": "claim lag, postgresql",
                "skipped": f"PostgreSQL unavailable: {type(error).__name__}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scheduled", type=int, default=SCHEDULED)
    parser.add_argument("--due", type=int, default=DUE)
    parser.add_argument("--window", type=float, default=WINDOW_SECONDS)
    args = parser.parse_args()
    for row in run(args.scheduled, args.due, args.window):
        print(json.dumps(row, default=str))


if __name__ == "__main__":
    main()
