"""The clinic's on-call list and alert parameters are replaced as a whole, so two admins editing
the same copy would lose one another's change: both routes serve an ETag and refuse a stale
If-Match with 412, changing nothing (both databases)."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import clinic_settings
from tests.identity.conftest import MovableClock, World, runtime_of
from tests.if_match import ConditionalPut, check_conditional_put
from tests.races import race, second_refused_as_stale

ON_CALL = "/api/v1/clinic/alert-on-call"
PARAMETERS = "/api/v1/clinic/alert-parameters"


def _override(version: str, priority_minutes: int) -> dict[str, Any]:
    return {
        "parameterSet": "clinic-a",
        "version": version,
        "slaMinutes": {"priority": priority_minutes},
    }


def _bodies(world: World) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Per route, two different valid bodies: what the first admin saves, what the second
    would save over it."""
    clinician, admin = world.staff["clinician_a"], world.staff["admin_a"]
    return {
        ON_CALL: ({"staffIds": [str(clinician.id)]}, {"staffIds": [str(admin.id)]}),
        PARAMETERS: (_override("2", 30), _override("3", 45)),
    }


@pytest.mark.parametrize("route", [ON_CALL, PARAMETERS])
async def test_a_stale_if_match_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock, route: str
) -> None:
    clinician, admin = world.staff["clinician_a"], world.staff["admin_a"]
    bodies: tuple[Any, Any, Any, Any] = (
        (
            {"staffIds": [str(clinician.id)]},
            {"staffIds": [str(admin.id)]},
            {"staffIds": [str(clinician.id), str(admin.id)]},
            {"staffIds": []},
        )
        if route == ON_CALL
        else (_override("2", 30), _override("3", 45), _override("4", 60), _override("5", 90))
    )
    await check_conditional_put(
        api,
        clock,
        ConditionalPut(
            get_url=route,
            put_url=route,
            reader=clinician.headers,
            admin=admin.headers,
            bodies=bodies,
        ),
    )


async def test_the_other_clinic_s_tag_does_not_change(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    other = world.staff["admin_b"]
    before = {
        route: (await api.get(route, headers=other.headers)).headers["etag"]
        for route in _bodies(world)
    }
    for route, (first, _) in _bodies(world).items():
        saved = await api.put(route, headers=world.staff["admin_a"].headers, json=first)
        assert saved.status_code == 200, saved.text
    for route, tag in before.items():
        assert (await api.get(route, headers=other.headers)).headers["etag"] == tag


@pytest.mark.parametrize("route", [ON_CALL, PARAMETERS])
async def test_two_writes_of_the_same_version_do_not_both_succeed(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock, route: str
) -> None:
    """Both transactions check the same If-Match: the second waits while the first holds the
    clinic (PostgreSQL: its row locked; SQLite: one writer at a time), then sees the new state
    and is refused, so the first admin's change is not lost."""
    admin = world.staff["admin_a"]
    principal = admin.principal()
    clinic_id = principal.clinic_id
    assert clinic_id is not None
    runtime = runtime_of(api)
    read = await api.get(route, headers=admin.headers)
    version = frozenset({read.headers["etag"].strip('"')})
    first, second = _bodies(world)[route]

    def writer(body: dict[str, Any]) -> Callable[[AsyncSession], Awaitable[None]]:
        async def write(session: AsyncSession) -> None:
            if route == ON_CALL:
                staff = [uuid.UUID(s) for s in body["staffIds"]]
                await clinic_settings.replace_on_call(
                    session, principal, clinic_id, staff, now=clock.now(), if_match=version
                )
            else:
                await clinic_settings.save_parameter_override(
                    session, principal, clinic_id, body, now=clock.now(), if_match=version
                )

        return write

    await second_refused_as_stale(runtime, writer(first), writer(second))
    shown = await api.get(route, headers=admin.headers)
    if route == ON_CALL:
        assert shown.json() == first
    else:
        assert shown.json()["override"] == first


async def test_unconditional_replacements_of_the_on_call_list_do_not_interleave(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    """Without If-Match the second replacement waits for the first and wins whole; the list is
    never a mix of both, and neither write fails."""
    admin = world.staff["admin_a"]
    principal = admin.principal()
    assert principal.clinic_id is not None
    clinic_id = principal.clinic_id
    runtime = runtime_of(api)
    lists = (
        [world.staff["clinician_a"].id, admin.id],
        [admin.id, world.staff["clinician_a"].id],
    )

    def writer(staff: list[uuid.UUID]) -> Callable[[AsyncSession], Awaitable[None]]:
        async def write(session: AsyncSession) -> None:
            await clinic_settings.replace_on_call(
                session, principal, clinic_id, staff, now=clock.now()
            )

        return write

    await race(runtime, writer(lists[0]), writer(lists[1]))
    shown = await api.get(ON_CALL, headers=admin.headers)
    assert shown.json() == {"staffIds": [str(s) for s in lists[1]]}
