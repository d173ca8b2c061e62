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
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.lib.errors import PreconditionFailed
from tests.identity.conftest import MovableClock, StaffAccount, World, runtime_of
from tests.races import race

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
    admin, reader = world.staff["admin_a"], world.staff["clinician_a"]
    first, second = _bodies(world)[route]

    read = await api.get(route, headers=reader.headers)
    assert read.status_code == 200, read.text
    tag = read.headers["etag"]
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert len(tag) == 34
    # The same state gives the same tag, to every reader.
    assert (await api.get(route, headers=admin.headers)).headers["etag"] == tag

    saved = await api.put(route, headers={**admin.headers, "If-Match": tag}, json=first)
    assert saved.status_code == 200, saved.text
    new_tag = saved.headers["etag"]
    assert new_tag != tag
    after = await api.get(route, headers=reader.headers)
    assert after.headers["etag"] == new_tag  # what the PUT answered is what a GET shows
    clock.advance(seconds=1)

    for stale in (tag, f"W/{new_tag}", f'{tag}, "other"'):
        refused = await api.put(route, headers={**admin.headers, "If-Match": stale}, json=second)
        assert refused.status_code == 412, (stale, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("precondition-failed")
    malformed = await api.put(route, headers={**admin.headers, "If-Match": "abc"}, json=second)
    assert malformed.status_code == 422, malformed.text
    unchanged = await api.get(route, headers=reader.headers)
    assert unchanged.json() == after.json()
    assert unchanged.headers["etag"] == new_tag

    # The current tag (among others) is accepted; "*" and no If-Match write unconditionally.
    accepted = await api.put(
        route, headers={**admin.headers, "If-Match": f'"other", {new_tag}'}, json=second
    )
    assert accepted.status_code == 200, accepted.text
    assert (await api.get(route, headers=reader.headers)).json() == accepted.json()
    clock.advance(seconds=1)
    again = _override("4", 60) if route == PARAMETERS else first
    star = await api.put(route, headers={**admin.headers, "If-Match": "*"}, json=again)
    assert star.status_code == 200, star.text
    clock.advance(seconds=1)
    again = _override("5", 90) if route == PARAMETERS else second
    plain = await api.put(route, headers=admin.headers, json=again)
    assert plain.status_code == 200, plain.text


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


def _admin(account: StaffAccount) -> Principal:
    assert account.clinic_id is not None
    return Principal(
        subject_id=account.id,
        role=Role.CLINIC_ADMIN,
        clinic_id=account.clinic_id,
        session_id=uuid.uuid4(),
    )


@pytest.mark.parametrize("route", [ON_CALL, PARAMETERS])
async def test_two_writes_of_the_same_version_do_not_both_succeed(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock, route: str
) -> None:
    """Both transactions check the same If-Match: the second waits while the first holds the
    clinic (PostgreSQL: its row locked; SQLite: one writer at a time), then sees the new state
    and is refused, so the first admin's change is not lost."""
    admin = world.staff["admin_a"]
    principal = _admin(admin)
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

    with pytest.raises(PreconditionFailed):
        await race(
            runtime.require_sessionmaker(),
            runtime.require_engine(),
            writer(first),
            writer(second),
        )
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
    principal = _admin(admin)
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

    await race(
        runtime.require_sessionmaker(), runtime.require_engine(), writer(lists[0]), writer(lists[1])
    )
    shown = await api.get(ON_CALL, headers=admin.headers)
    assert shown.json() == {"staffIds": [str(s) for s in lists[1]]}
