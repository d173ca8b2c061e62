"""A course's baselines (B0) are decided by clinicians who each read them first: recording or
forgetting one with a stale If-Match (the tag `GET .../baselines` serves) is refused with 412 and
changes nothing, on both databases; two records from the same tag do not both succeed.

One tag covers all of the course's baselines, derived ones included: a patient answering again
before the first session changes the B0 a clinician read, so their choice is made stale too."""

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.treatment import CourseBaseline
from backend.domain.sessions import baselines
from backend.domain.sessions.schemas import BaselineInput
from backend.lib.preconditions import etag_headers
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock
from tests.races import second_refused_as_stale
from tests.sessions.courses import phq9_answer_list, plan_course, submit

Write = Callable[[AsyncSession], Awaitable[None]]


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


async def _course(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> str:
    """The URL of a course whose first session is in two days."""
    headers = people.staff["clinician_a"].headers
    start = clock.now() + timedelta(days=2)
    return await plan_course(api, headers, people.patients["patient_a"].id, start)


async def _from_app(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    total: int,
) -> str:
    headers = people.patients["patient_a"].headers
    return await submit(api, headers, "phq9", phq9_answer_list(total))


async def _read(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    course: str,
) -> tuple[str, Any]:
    read = await api.get(f"{course}/baselines", headers=people.staff["admin_a"].headers)
    assert read.status_code == 200, read.text
    return read.headers["etag"], read.json()


async def _recorded(api: AsyncTestClient[Litestar]) -> int:  # noqa: F811
    async with runtime_of(api).require_sessionmaker()() as s:
        return int(await s.scalar(select(func.count()).select_from(CourseBaseline)) or 0)


async def test_a_stale_baselines_tag_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    nurse, doctor = people.staff["clinician_a"].headers, people.staff["admin_a"].headers
    course = await _course(api, people, clock)
    url = f"{course}/baselines/phq9"
    first_answer = await _from_app(api, people, 18)
    tag, shown = await _read(api, people, course)
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag), tag
    # The same baselines give the same tag, to every clinician of the clinic.
    same = await api.get(f"{course}/baselines", headers=nurse)
    assert same.headers["etag"] == tag

    # The nurse records the intake form's PHQ-9 as B0, from the page she read.
    intake = {
        "answers": phq9_answer_list(21),
        "authored": (clock.now() - timedelta(days=1)).isoformat(),
    }
    saved = await api.put(url, headers={**nurse, "If-Match": tag}, json=intake)
    assert saved.status_code == 200, saved.text
    new_tag, after = await _read(api, people, course)
    assert saved.headers["etag"] == new_tag != tag  # the next GET's tag, for a further change
    assert after != shown
    recorded = await _recorded(api)

    # The doctor read the page before the nurse's save: linking the app's answer is refused.
    link = {"response_id": first_answer}
    for stale in (tag, f"W/{new_tag}", f'{tag}, "other"'):
        refused = await api.put(url, headers={**doctor, "If-Match": stale}, json=link)
        assert refused.status_code == 412, (stale, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("precondition-failed")
        assert "baselines" in refused.json()["detail"]
        forgotten = await api.delete(url, headers={**doctor, "If-Match": stale})
        assert forgotten.status_code == 412, (stale, forgotten.text)
    malformed = await api.put(url, headers={**doctor, "If-Match": "abc"}, json=link)
    assert malformed.status_code == 422, malformed.text
    malformed = await api.delete(url, headers={**doctor, "If-Match": "abc"})
    assert malformed.status_code == 422, malformed.text
    # A refused form entered in clinic stores no response either.
    answers = {"answers": phq9_answer_list(9), "authored": intake["authored"]}
    refused = await api.put(url, headers={**doctor, "If-Match": tag}, json=answers)
    assert refused.status_code == 412, refused.text
    assert await _read(api, people, course) == (new_tag, after)
    assert await _recorded(api) == recorded

    # The current tag among others is accepted; "*" and no If-Match are unconditional.
    linked = await api.put(url, headers={**doctor, "If-Match": f'"other", {new_tag}'}, json=link)
    assert linked.status_code == 200, linked.text
    assert linked.json()["response_id"] == first_answer
    current, _ = await _read(api, people, course)
    assert linked.headers["etag"] == current != new_tag
    star = await api.put(url, headers={**nurse, "If-Match": "*"}, json=intake)
    assert star.status_code == 200, star.text
    plain = await api.put(url, headers=doctor, json=link)
    assert plain.status_code == 200, plain.text
    assert plain.headers["etag"] == current  # the same choice again: the same tag

    # Forgotten with the current tag: B0 is derived from the app's answer again.
    removed = await api.delete(url, headers={**nurse, "If-Match": current})
    assert removed.status_code == 204, removed.text
    derived_tag, derived = await _read(api, people, course)
    (phq9,) = [b for b in derived["baselines"] if b["instrument_id"] == "phq9"]
    assert (phq9["source"], phq9["response_id"]) == ("derived", first_answer)

    # The patient answers again before the first session: the derived B0 the doctor read has
    # changed, so her choice made from it is refused.
    clock.advance(seconds=1)
    second_answer = await _from_app(api, people, 11)
    late = await api.put(url, headers={**doctor, "If-Match": derived_tag}, json=link)
    assert late.status_code == 412, late.text
    final_tag, final = await _read(api, people, course)
    (phq9,) = [b for b in final["baselines"] if b["instrument_id"] == "phq9"]
    assert (phq9["source"], phq9["response_id"]) == ("derived", second_answer)
    assert final_tag != derived_tag


async def test_two_records_from_the_same_tag_do_not_both_succeed(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """The second transaction waits while the first holds the course's row (PostgreSQL: locked;
    SQLite: one writer at a time), then sees the new baselines and is refused."""
    course = await _course(api, people, clock)
    course_id = uuid.UUID(course.rsplit("/", 1)[1])
    patient_id = uuid.UUID(str(people.patients["patient_a"].id))
    staff_id = uuid.UUID(str(people.staff["clinician_a"].id))
    first, second = await _from_app(api, people, 18), await _from_app(api, people, 12)
    tag, _ = await _read(api, people, course)
    runtime = runtime_of(api)
    version = frozenset({tag.strip('"')})

    def writer(response_id: str) -> Write:
        async def write(db_session: AsyncSession) -> None:
            await baselines.record_baseline(
                db_session,
                runtime.keyring,
                patient_id=patient_id,
                course_id=course_id,
                instrument_id="phq9",
                data=BaselineInput(response_id=uuid.UUID(response_id)),
                staff_id=staff_id,
                idempotency_key=None,
                now=clock.now(),
                if_match=version,
            )

        return write

    await second_refused_as_stale(runtime, writer(first), writer(second))
    _, shown = await _read(api, people, course)
    (phq9,) = [b for b in shown["baselines"] if b["instrument_id"] == "phq9"]
    assert (phq9["source"], phq9["response_id"]) == ("recorded", first)
    async with runtime.require_sessionmaker()() as s:
        stored = await baselines.course_baselines(
            s, runtime.keyring, patient_id=patient_id, course_id=course_id
        )
    assert etag_headers(stored)["ETag"] == (await _read(api, people, course))[0]
