"""What a submission reads before it writes (`responses.repository.submission_context`), beside
what the alert rules would read for themselves (`alerts.sources.submission_scope`): the latest
answers to the submitted instrument and to the B12 risk items come with the context, one round
trip fewer, and they are the same rows (both databases)."""

import uuid
from datetime import timedelta
from typing import Any, cast

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.domain.alerts import sources
from backend.domain.alerts.history import B12_RISK_INSTRUMENT
from backend.domain.responses import repository
from questionnaires.answers import AnswerValue
from questionnaires.registry import get_instrument
from tests.alerts.stored import phq9, submit
from tests.identity.conftest import MovableClock, World, runtime_of


def _b12(*yes: int) -> dict[str, AnswerValue]:
    instrument = get_instrument(B12_RISK_INSTRUMENT)
    return {item.link_id: int(item.link_id.rsplit("-", 1)[1]) in yes for item in instrument.items}


async def _both(
    api: AsyncTestClient[Litestar], clock: MovableClock, patient_id: uuid.UUID, instrument: str
) -> tuple[sources.PriorResponses, sources.SubmissionScope]:
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        connection = await session.connection()
        context = await repository.submission_context(
            connection,
            patient_id,
            clock.now(),
            instrument_id=instrument,
            b12_instrument_id=B12_RISK_INSTRUMENT,
            session_id=None,
        )
        assert context is not None
        scope = await sources.submission_scope(
            connection,
            patient_id,
            instrument_id=instrument,
            b12_instrument_id=B12_RISK_INSTRUMENT,
            response_id=uuid.uuid4(),  # a submission not stored yet
            since=None,
        )
    return context.prior, scope


def _ids(row: Any) -> object:
    return None if row is None else (row.id, bytes(row.answers_ct), bytes(row.score_ct))


class _NoConnection:
    """A tripwire: any use of the connection fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a statement was run ({name})")


async def test_the_context_holds_the_latest_answers_the_rules_read(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    prior, scope = await _both(api, clock, patient.id, "phq9")
    assert (prior.instrument_id, prior.previous, prior.latest_b12) == ("phq9", None, None)
    assert (scope.previous, scope.latest_b12) == (None, None)

    # Several answers to each, a later one authored before an earlier one (an offline phone),
    # and another patient's answers, which never count.
    await submit(api, clock, patient, "phq9", phq9(5))
    clock.advance(minutes=10)
    await submit(api, clock, patient, B12_RISK_INSTRUMENT, _b12(1))
    clock.advance(minutes=10)
    latest_phq9 = await submit(api, clock, patient, "phq9", phq9(9))
    latest_b12 = await submit(api, clock, patient, B12_RISK_INSTRUMENT, _b12(2, 3))
    clock.advance(minutes=10)
    await submit(api, clock, patient, "phq9", phq9(2), authored=clock.now() - timedelta(minutes=25))
    await submit(api, clock, world.patients["patient_a2"], "phq9", phq9(20))

    for instrument in ("phq9", B12_RISK_INSTRUMENT, "gad7"):
        prior, scope = await _both(api, clock, patient.id, instrument)
        assert prior.instrument_id == instrument
        assert _ids(prior.previous) == _ids(scope.previous), instrument
        assert _ids(prior.latest_b12) == _ids(scope.latest_b12), instrument
    assert prior.previous is None  # no GAD-7 answered
    assert prior.latest_b12 is not None
    assert prior.latest_b12.id == latest_b12.response_id
    # The latest by authored time, not by arrival: the late answer is older.
    phq, _ = await _both(api, clock, patient.id, "phq9")
    assert phq.previous is not None
    assert phq.previous.id == latest_phq9.response_id


async def test_a_submission_reads_no_scope_statement_without_a_course(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    """Given what the context read, a patient without a course needs no further read."""
    patient = world.patients["patient_a"]
    await submit(api, clock, patient, "phq9", phq9(5))
    prior, _ = await _both(api, clock, patient.id, "phq9")
    scope = await sources.submission_scope(
        cast(AsyncConnection, _NoConnection()),
        patient.id,
        instrument_id="phq9",
        b12_instrument_id=B12_RISK_INSTRUMENT,
        response_id=uuid.uuid4(),
        since=None,
        prior=prior,
    )
    assert (scope.previous, scope.latest_b12, scope.since) == (prior.previous, None, [])
