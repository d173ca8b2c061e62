"""A session's planned times and a patient's schedule (time zone, quiet hours) are replaced as a
whole by PUTs that several clinicians (and the patient) can send: a stale If-Match is refused
with 412 and changes nothing (both databases).

The session's entity tag is its ``version`` (as for its observations); the patient's schedule's is
a hash of `PatientSchedule`, served by its GET and by the PUT's answer."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta, timezone
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins.quiet_hours import QuietHours
from backend.domain.sessions import service
from backend.domain.sessions.schemas import PatientSchedule, SessionReschedule
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

# Not UTC, with microseconds: the version must not depend on how a database returns them.
PLUS_TWO = timezone(timedelta(hours=2))

Write = Callable[[AsyncSession], Awaitable[None]]


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


def _start(clock: MovableClock, days: float) -> datetime:
    return (clock.now() + timedelta(days=days, microseconds=654_321)).astimezone(PLUS_TWO)


async def _planned(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> tuple[str, dict[str, Any]]:
    base = f"/api/v1/patients/{people.patients['patient_a'].id}"
    created = await api.post(
        f"{base}/sessions",
        headers=people.staff["clinician_a"].headers,
        json={
            "modality": "n2o",
            "planned_start": _start(clock, 2).isoformat(),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return base, session


async def _shown(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    base: str,
    session_id: str,
) -> dict[str, Any]:
    listed = await api.get(f"{base}/sessions", headers=people.staff["admin_a"].headers)
    assert listed.status_code == 200, listed.text
    (shown,) = [s for s in listed.json()["sessions"] if s["id"] == session_id]
    return dict(shown)


async def test_a_stale_session_version_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    nurse, doctor = people.staff["clinician_a"], people.staff["admin_a"]
    base, session = await _planned(api, people, clock)
    url = f"{base}/sessions/{session['id']}/schedule"
    read = (await _shown(api, people, base, session["id"]))["version"]
    assert read == session["version"]
    assert len(read) == 32

    clock.advance(seconds=1, microseconds=123_457)
    first = {"planned_start": _start(clock, 3).isoformat(), "minutes": 45}
    moved = await api.put(url, headers={**nurse.headers, "If-Match": f'"{read}"'}, json=first)
    assert moved.status_code == 200, moved.text
    version = moved.json()["version"]
    assert version != read
    assert moved.headers["etag"] == f'"{version}"'
    after = await _shown(api, people, base, session["id"])
    assert after["version"] == version  # what the PUT answered is what a GET shows

    clock.advance(seconds=1)
    second = {"planned_start": _start(clock, 4).isoformat()}
    for stale in (f'"{read}"', f'W/"{version}"', f'"{read}", "other"'):
        refused = await api.put(url, headers={**doctor.headers, "If-Match": stale}, json=second)
        assert refused.status_code == 412, (stale, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("precondition-failed")
    malformed = await api.put(url, headers={**doctor.headers, "If-Match": "abc"}, json=second)
    assert malformed.status_code == 422, malformed.text
    assert await _shown(api, people, base, session["id"]) == after

    # The current version (among others) is accepted; "*" and no If-Match are unconditional.
    conditions: list[str | None] = [f'"other", "{version}"', "*", None]
    for days, condition in zip((4, 5, 6), conditions, strict=True):
        clock.advance(seconds=1)
        headers = dict(doctor.headers)
        if condition is not None:
            headers["If-Match"] = condition
        body = {"planned_start": _start(clock, days).isoformat()}
        accepted = await api.put(url, headers=headers, json=body)
        assert accepted.status_code == 200, (condition, accepted.text)
        version = accepted.json()["version"]
        assert accepted.headers["etag"] == f'"{version}"'
        assert (await _shown(api, people, base, session["id"]))["version"] == version


async def test_two_reschedules_of_the_same_version_do_not_both_succeed(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """The second transaction waits while the first holds the session's row (PostgreSQL: locked
    by the read; SQLite: one writer at a time), then sees the new version and is refused."""
    base, session = await _planned(api, people, clock)
    runtime = runtime_of(api)
    version = frozenset({session["version"]})
    patient_id = uuid.UUID(str(people.patients["patient_a"].id))
    starts = (_start(clock, 3), _start(clock, 4))

    def writer(start: datetime) -> Write:
        async def write(db_session: AsyncSession) -> None:
            await service.reschedule_session(
                db_session,
                patient_id=patient_id,
                session_id=uuid.UUID(session["id"]),
                data=SessionReschedule(planned_start=start),
                now=clock.now(),
                if_match=version,
            )

        return write

    await second_refused_as_stale(runtime, writer(starts[0]), writer(starts[1]))
    shown = await _shown(api, people, base, session["id"])
    assert datetime.fromisoformat(shown["planned_start"]) == starts[0]


async def _stored_schedule(
    api: AsyncTestClient[Litestar],  # noqa: F811
    patient_id: uuid.UUID,
) -> PatientSchedule:
    async with runtime_of(api).require_sessionmaker()() as db_session:
        return await service.patient_schedule(db_session, patient_id)


async def test_a_stale_schedule_tag_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    patient, clinician = people.patients["patient_a"], people.staff["clinician_a"]
    patient_id = uuid.UUID(str(patient.id))
    url = f"/api/v1/patients/{patient.id}/schedule"
    preferences = f"/api/v1/patients/{patient.id}/notification-preferences"

    # The GET serves the tag, to the patient and to their clinician alike.
    read = await api.get(url, headers=clinician.headers)
    assert read.status_code == 200, read.text
    tag = read.headers["etag"]
    assert (await api.get(url, headers=patient.headers)).headers["etag"] == tag
    shown = (await api.get(preferences, headers=clinician.headers)).json()
    fields = ("time_zone", "quiet_hours_start", "quiet_hours_end")
    assert read.json() == {k: shown[k] for k in fields}
    assert tag == etag_headers(await _stored_schedule(api, patient_id))["ETag"]
    assert len(tag) == 34

    first = {"time_zone": "Europe/Paris", "quiet_hours_start": "22:00", "quiet_hours_end": "07:00"}
    saved = await api.put(url, headers={**patient.headers, "If-Match": tag}, json=first)
    assert saved.status_code == 200, saved.text
    new_tag = saved.headers["etag"]
    assert new_tag.startswith('"')
    assert new_tag != tag
    assert etag_headers(await _stored_schedule(api, patient_id))["ETag"] == new_tag
    assert (await api.get(url, headers=patient.headers)).headers["etag"] == new_tag
    after = (await api.get(preferences, headers=clinician.headers)).json()
    assert (after["time_zone"], after["quiet_hours_start"]) == ("Europe/Paris", "22:00")

    second = {"time_zone": "America/New_York"}
    for stale in (tag, f"W/{new_tag}", f'{tag}, "other"'):
        refused = await api.put(url, headers={**clinician.headers, "If-Match": stale}, json=second)
        assert refused.status_code == 412, (stale, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("precondition-failed")
    malformed = await api.put(url, headers={**clinician.headers, "If-Match": "abc"}, json=second)
    assert malformed.status_code == 422, malformed.text
    assert (await api.get(preferences, headers=clinician.headers)).json() == after

    accepted = await api.put(
        url, headers={**clinician.headers, "If-Match": f'"other", {new_tag}'}, json=second
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["time_zone"] == "America/New_York"
    current = accepted.headers["etag"]
    assert etag_headers(await _stored_schedule(api, patient_id))["ETag"] == current
    star = await api.put(url, headers={**patient.headers, "If-Match": "*"}, json=first)
    assert star.status_code == 200, star.text
    plain = await api.put(url, headers=patient.headers, json=second)
    assert plain.status_code == 200, plain.text
    assert plain.headers["etag"] == current  # the same schedule again: the same tag

    # Quiet hours changed through the preferences route make the schedule's tag stale too.
    changed = await api.put(
        preferences,
        headers=clinician.headers,
        json={"channels": ["push"], "quiet_hours_start": "23:00", "quiet_hours_end": "06:00"},
    )
    assert changed.status_code == 200, changed.text
    late = await api.put(url, headers={**patient.headers, "If-Match": current}, json=first)
    assert late.status_code == 412, late.text


async def test_two_schedule_changes_of_the_same_tag_do_not_both_succeed(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """The second transaction waits while the first holds the patient's row, then is refused."""
    patient_id = uuid.UUID(str(people.patients["patient_a"].id))
    runtime = runtime_of(api)
    current = await _stored_schedule(api, patient_id)
    version = frozenset({etag_headers(current)["ETag"].strip('"')})

    def writer(time_zone: str, quiet_hours: QuietHours | None) -> Write:
        async def write(db_session: AsyncSession) -> None:
            await service.change_patient_schedule(
                db_session,
                patient_id=patient_id,
                time_zone=time_zone,
                quiet_hours=quiet_hours,
                now=clock.now(),
                if_match=version,
            )

        return write

    await second_refused_as_stale(
        runtime,
        writer("Europe/Paris", QuietHours(start=time(23, 0), end=time(6, 0))),
        writer("America/New_York", None),
    )
    stored = await _stored_schedule(api, patient_id)
    assert stored.time_zone == "Europe/Paris"
    assert (stored.quiet_hours_start, stored.quiet_hours_end) == ("23:00", "06:00")


async def test_every_change_a_clinician_sees_changes_the_session_version_in_one_instant(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """The version must not lean on ``updated_at`` alone: two writes in the same instant (a
    clock's resolution, or this frozen test clock) that change only whether the session ends the
    course are two versions, so a copy read before the first is refused by the second."""
    nurse, doctor = people.staff["clinician_a"], people.staff["admin_a"]
    base, session = await _planned(api, people, clock)
    url = f"{base}/sessions/{session['id']}/schedule"
    read = session["version"]
    same = {"planned_start": session["planned_start"]}
    marked = await api.put(
        url,
        headers={**nurse.headers, "If-Match": f'"{read}"'},
        json={**same, "last_in_course": True},
    )
    assert marked.status_code == 200, marked.text
    assert marked.json()["last_in_course"] is True
    assert marked.json()["version"] != read
    after = await _shown(api, people, base, session["id"])
    stale = await api.put(
        url,
        headers={**doctor.headers, "If-Match": f'"{read}"'},
        json={**same, "last_in_course": False},
    )
    assert stale.status_code == 412, stale.text
    assert await _shown(api, people, base, session["id"]) == after
