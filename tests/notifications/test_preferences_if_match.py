"""Notification preferences are replaced as a whole, and two people can edit the same copy (a
patient and their clinician; a clinician and their clinic admin): the GETs serve an ETag, the PUTs
refuse a stale If-Match with 412 and change nothing (both databases)."""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import time
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins.quiet_hours import QuietHours
from backend.domain.preferences import service
from backend.domain.preferences.rules import PatientChannel, StaffPreferences
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

MINE = "/api/v1/staff/me/notification-preferences"


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


@dataclass(frozen=True)
class Route:
    """A PUT, the GET that shows what it replaces, who calls each, and bodies to save in turn
    (each differs from the one before)."""

    put: str
    get: str
    writer: dict[str, str]
    reader: dict[str, str]
    bodies: tuple[dict[str, Any], ...]


def _route(name: str, people: World) -> Route:
    patient, clinician = people.patients["patient_a"], people.staff["clinician_a"]
    staff_bodies: tuple[dict[str, Any], ...] = (
        {"on_call": False},
        {"channel": "email", "on_call": True},
        {"on_call": False},
        {},
    )
    if name == "patient":
        url = f"/api/v1/patients/{patient.id}/notification-preferences"
        bodies: tuple[dict[str, Any], ...] = (
            {"channels": ["push", "sms"], "quiet_hours_start": "22:30", "quiet_hours_end": "07:00"},
            {"channels": ["sms"]},
            {"channels": ["push"], "quiet_hours_start": "21:00", "quiet_hours_end": "08:00"},
            {"channels": ["sms", "push"]},
        )
        return Route(url, url, patient.headers, clinician.headers, bodies)
    if name == "mine":
        return Route(MINE, MINE, clinician.headers, clinician.headers, staff_bodies)
    colleague = f"/api/v1/clinic/staff/{clinician.id}/notification-preferences"
    admin = people.staff["admin_a"].headers
    return Route(colleague, colleague, admin, admin, staff_bodies)


@pytest.mark.parametrize("name", ["patient", "mine", "colleague"])
async def test_a_stale_if_match_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
    name: str,
) -> None:
    route = _route(name, people)
    first, second, third, fourth = route.bodies

    read = await api.get(route.get, headers=route.reader)
    assert read.status_code == 200, read.text
    tag = read.headers["etag"]
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert len(tag) == 34
    assert (await api.get(route.get, headers=route.reader)).headers["etag"] == tag

    clock.advance(seconds=1, microseconds=123_457)
    saved = await api.put(route.put, headers={**route.writer, "If-Match": tag}, json=first)
    assert saved.status_code == 200, saved.text
    new_tag = saved.headers["etag"]
    assert new_tag != tag
    after = await api.get(route.get, headers=route.reader)
    assert after.headers["etag"] == new_tag  # what the PUT answered is what a GET shows
    assert after.json() == saved.json()

    for stale in (tag, f"W/{new_tag}", f'{tag}, "other"'):
        refused = await api.put(route.put, headers={**route.writer, "If-Match": stale}, json=second)
        assert refused.status_code == 412, (stale, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("precondition-failed")
    malformed = await api.put(route.put, headers={**route.writer, "If-Match": "abc"}, json=second)
    assert malformed.status_code == 422, malformed.text
    unchanged = await api.get(route.get, headers=route.reader)
    assert unchanged.json() == after.json()
    assert unchanged.headers["etag"] == new_tag

    # The current tag (among others) is accepted; "*" and no If-Match write unconditionally.
    accepted = await api.put(
        route.put, headers={**route.writer, "If-Match": f'"other", {new_tag}'}, json=second
    )
    assert accepted.status_code == 200, accepted.text
    shown = await api.get(route.get, headers=route.reader)
    assert shown.json() == accepted.json()
    assert shown.headers["etag"] == accepted.headers["etag"]
    star = await api.put(route.put, headers={**route.writer, "If-Match": "*"}, json=third)
    assert star.status_code == 200, star.text
    plain = await api.put(route.put, headers=route.writer, json=fourth)
    assert plain.status_code == 200, plain.text
    assert (await api.get(route.get, headers=route.reader)).headers["etag"] == plain.headers["etag"]


async def test_a_clinician_and_their_admin_editing_the_same_copy_do_not_both_save(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    clinician, admin = people.staff["clinician_a"], people.staff["admin_a"]
    colleague = f"/api/v1/clinic/staff/{clinician.id}/notification-preferences"

    # The admin saved last: their answer's tag is what both GETs show.
    set_by_admin = await api.put(colleague, headers=admin.headers, json={"on_call": True})
    assert set_by_admin.status_code == 200, set_by_admin.text
    copy = set_by_admin.headers["etag"]
    assert (await api.get(MINE, headers=clinician.headers)).headers["etag"] == copy
    assert (await api.get(colleague, headers=admin.headers)).headers["etag"] == copy
    # Another clinic's admin sees no such colleague.
    other = await api.get(colleague, headers=people.staff["admin_b"].headers)
    assert other.status_code == 404, other.text

    mine = await api.put(
        MINE, headers={**clinician.headers, "If-Match": copy}, json={"on_call": False}
    )
    assert mine.status_code == 200, mine.text
    theirs = await api.put(
        colleague, headers={**admin.headers, "If-Match": copy}, json={"channel": "email"}
    )
    assert theirs.status_code == 412, theirs.text
    assert theirs.json()["type"].endswith("precondition-failed")
    shown = await api.get(MINE, headers=clinician.headers)
    assert shown.json()["on_call"] is False  # the clinician's change stands
    assert shown.headers["etag"] == mine.headers["etag"]

    # The other way round: the admin saves first over the copy both read.
    copy = shown.headers["etag"]
    theirs = await api.put(
        colleague, headers={**admin.headers, "If-Match": copy}, json={"on_call": True}
    )
    assert theirs.status_code == 200, theirs.text
    mine = await api.put(
        MINE, headers={**clinician.headers, "If-Match": copy}, json={"on_call": False}
    )
    assert mine.status_code == 412, mine.text
    assert (await api.get(MINE, headers=clinician.headers)).json()["on_call"] is True


Write = Callable[[AsyncSession], Awaitable[None]]


async def test_two_writes_of_the_same_staff_preferences_do_not_both_succeed(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """Both transactions check the same If-Match: the second waits while the first holds the
    staff row (PostgreSQL: locked; SQLite: one writer at a time), then is refused."""
    clinician = people.staff["clinician_a"]
    runtime = runtime_of(api)
    read = await api.get(MINE, headers=clinician.headers)
    version = frozenset({read.headers["etag"].strip('"')})

    def writer(preferences: StaffPreferences) -> Write:
        async def write(session: AsyncSession) -> None:
            await service.save_staff_preferences(
                session, clinician.id, preferences, now=clock.now(), if_match=version
            )

        return write

    await second_refused_as_stale(
        runtime,
        writer(StaffPreferences(on_call=False)),
        writer(StaffPreferences(on_call=True, channel="email")),
    )
    shown = await api.get(MINE, headers=clinician.headers)
    assert shown.json()["on_call"] is False


async def test_two_writes_of_the_same_patient_preferences_do_not_both_succeed(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    patient, clinician = people.patients["patient_a"], people.staff["clinician_a"]
    url = f"/api/v1/patients/{patient.id}/notification-preferences"
    runtime = runtime_of(api)
    read = await api.get(url, headers=clinician.headers)
    version = frozenset({read.headers["etag"].strip('"')})
    patient_id = uuid.UUID(str(patient.id))

    def writer(channels: list[PatientChannel], quiet: QuietHours | None) -> Write:
        async def write(session: AsyncSession) -> None:
            await service.save_patient_preferences(
                session,
                patient_id,
                channels,
                quiet,
                by=clinician.id,
                now=clock.now(),
                if_match=version,
            )

        return write

    await second_refused_as_stale(
        runtime,
        writer(["push", "sms"], QuietHours(start=time(23, 0), end=time(7, 0))),
        writer(["sms"], None),
    )
    shown = (await api.get(url, headers=clinician.headers)).json()
    assert shown["channels"] == ["push", "sms"]
    assert shown["quiet_hours_start"] == "23:00"
