"""What a submission's alert evaluation costs per response already in the patient's course.

A submission in a treatment course evaluates every rule against the whole course, so it reads and
decrypts every response of the course (`alerts.history.patient_timeline`). This bench measures
that cost in process, without HTTP, on SQLite: for patients whose course holds N responses, it
times what the submission route runs before it writes (`responses.service.submitting_patient`,
then `alerts.evaluation.plan_evaluation` with the new response) and, apart, the timeline alone
(`patient_timeline` with the prefetched course), and fits ``cost = base + slope * N``.

The patients are as the submissions bench has them "in a course": an N2O course of two sessions,
a day apart, the last a day ago; their responses are PHQ-9s (no blank suicide item) inside the
course's window, plus one N2O-NEURO checklist in three (its answers are read by a rule, so they
are decrypted too). Nothing is written: each submission is evaluated and rolled back, so N stays.

``python -m bench.bench_history [--sizes 0,20,80,160] [--repeat 200]``. Figures are CPU time of
this process (``time.process_time``), the median of five rounds; compare runs made back to back.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec

from backend.config import Settings, load_settings
from backend.db import migrate
from backend.db.engine import create_engine, create_sessionmaker
from backend.domain.alerts.evaluation import plan_evaluation
from backend.domain.alerts.history import SubmittedResponse, patient_timeline
from backend.domain.exports.source import RESPONSES
from backend.domain.responses import service
from backend.keyring.service import Keyring
from backend.lib.clock import SystemClock
from backend.lib.ids import uuid7
from backend.system.keys import load_kek
from bench.seeding import bench_clinic, insert_patient_in_course, response_row
from questionnaires.answers import Answer, Submission
from questionnaires.registry import catalogue, get_instrument

DEFAULT_SIZES: Final = (0, 20, 80, 160)
DEFAULT_REPEAT: Final = 200
ROUNDS: Final = 5
_encode = msgspec.msgpack.Encoder().encode


class _Routing(NamedTuple):
    """The patient row as the route passes it to the evaluation (read with the context)."""

    clinic_id: uuid.UUID
    care_team_id: uuid.UUID | None
    status: str


def _phq9(step: int) -> tuple[Answer, ...]:
    return tuple(
        Answer(link_id=f"phq9-{i}", value=0 if i == 9 else (i + step) % 3) for i in range(1, 10)
    )


def _neuro() -> tuple[Answer, ...]:
    # Every symptom no, so no follow-up is asked.
    items = get_instrument("n2o-neuro").items
    return tuple(Answer(link_id=i.link_id, value=False) for i in items if not i.enable_when)


def _stored(answers: tuple[Answer, ...], instrument_id: str) -> tuple[bytes, bytes, Any]:
    instrument = get_instrument(instrument_id)
    score = catalogue().score(
        Submission(
            instrument_id=instrument.id, instrument_version=instrument.version, answers=answers
        )
    )
    return _encode(sorted(answers, key=lambda a: a.link_id)), _encode(score), score


async def _seed(settings: Settings, keyring: Keyring, sizes: Sequence[int]) -> list[Any]:
    """One patient per size, each in a course holding that many responses; returns
    (patient_id, clinic_id, size) for each."""
    await migrate.upgrade_async(settings)
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    clinic = await bench_clinic(settings, keyring, sessions, SystemClock())
    now = datetime.now(UTC)
    neuro = _stored(_neuro(), "n2o-neuro")
    phq9 = [_stored(_phq9(step), "phq9") for step in range(3)]
    patients = []
    for size in sizes:
        patient_id = uuid7()
        async with sessions() as session:
            await keyring.create_key(session, patient_id)
            keys = await keyring.owner_keys(session, patient_id, active_only=True)
            connection = await session.connection()
            await insert_patient_in_course(
                connection,
                keys,
                clinic,
                patient_id=patient_id,
                birth=date(1980, 2, 29),
                course_started=now - timedelta(days=2),
                session_starts=[now - timedelta(days=days) for days in (2, 1)],
                now=now,
            )
            rows = []
            for k in range(size):
                answers_pt, score_pt, score = neuro if k % 3 == 2 else phq9[k % 3]
                rows.append(
                    response_row(
                        keys,
                        clinic,
                        patient_id=patient_id,
                        score=score,
                        answers_pt=answers_pt,
                        score_pt=score_pt,
                        # Spread over the course so far, oldest first, all before the submission.
                        authored=now - timedelta(days=3) + timedelta(minutes=20 * k),
                        now=now,
                    )
                )
            if rows:
                await connection.execute(RESPONSES.insert(), rows)
            await session.commit()
        patients.append((patient_id, clinic.clinic_id, size))
    await engine.dispose()
    return patients


async def _measure(
    settings: Settings, keyring: Keyring, patients: list[Any], repeat: int
) -> list[dict[str, Any]]:
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    phq9 = get_instrument("phq9")
    answers = _phq9(1)
    score = catalogue().score(
        Submission(instrument_id="phq9", instrument_version=phq9.version, answers=answers)
    )

    async def plan(patient_id: uuid.UUID, clinic_id: uuid.UUID) -> int:
        """The submission route's reads and its alert evaluation; nothing written."""
        async with sessions() as session:
            now = datetime.now(UTC)
            patient, prefetched = await service.submitting_patient(
                session,
                keyring,
                patient_id,
                clinic_id=clinic_id,
                now=now,
                instrument_id="phq9",
                session_id=None,
            )
            await plan_evaluation(
                session,
                keyring,
                patient_id=patient_id,
                clinic_id=clinic_id,
                now=now,
                routing=_Routing(patient.clinic_id, patient.care_team_id, "active"),
                keys=prefetched.keys,
                parameters=prefetched.parameters,
                course=prefetched.course,
                parts=prefetched.parts,
                prior=prefetched.prior,
                submitted=SubmittedResponse(id=uuid7(), authored=now, score=score, answers=answers),
            )
            await session.rollback()
        return 0

    async def timeline(patient_id: uuid.UUID, clinic_id: uuid.UUID) -> int:
        """The timeline alone (after the same context read as `plan`, which it needs)."""
        async with sessions() as session:
            now = datetime.now(UTC)
            _, prefetched = await service.submitting_patient(
                session,
                keyring,
                patient_id,
                clinic_id=clinic_id,
                now=now,
                instrument_id="phq9",
                session_id=None,
            )
            built = await patient_timeline(
                session,
                keyring,
                patient_id,
                prefetched.parameters,
                now=now,
                keys=prefetched.keys,
                course=prefetched.course,
                parts=prefetched.parts,
                prior=prefetched.prior,
                submitted=SubmittedResponse(id=uuid7(), authored=now, score=score, answers=answers),
            )
            await session.rollback()
        return len(built.responses)

    async def cpu_us(step: Callable[[uuid.UUID, uuid.UUID], Awaitable[int]], patient: Any) -> float:
        patient_id, clinic_id, _ = patient
        for _ in range(max(repeat // 10, 5)):  # warm the caches and the statement compilation
            await step(patient_id, clinic_id)
        rounds = []
        for _ in range(ROUNDS):
            started = time.process_time()
            for _ in range(repeat):
                await step(patient_id, clinic_id)
            rounds.append((time.process_time() - started) / repeat * 1e6)
        return statistics.median(rounds)

    results = []
    for name, step in (("plan (route reads + evaluation)", plan), ("timeline", timeline)):
        points = [(patient[2], await cpu_us(step, patient)) for patient in patients]
        slope, base = _fit(points)
        results.append(
            {
                "suite": "history",
                "name": name,
                "us_by_course_size": {n: round(us) for n, us in points},
                "base_us": round(base),
                "us_per_response": round(slope, 2),
            }
        )
    await engine.dispose()
    return results


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares: (slope, intercept)."""
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return slope, mean_y - slope * mean_x


def run(sizes: Sequence[int] = DEFAULT_SIZES, repeat: int = DEFAULT_REPEAT) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-history-") as raw:
        settings = load_settings(
            {"INTERLUDE_DATA_DIR": str(Path(raw)), "INTERLUDE_LOG_LEVEL": "WARNING"}
        )
        keyring = Keyring(load_kek(settings))
        patients = asyncio.run(_seed(settings, keyring, sizes))
        return asyncio.run(_measure(settings, keyring, patients, repeat))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    for line in run(sizes, args.repeat):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
