"""A clinic's crisis resources for a locale are replaced as a whole, so two admins editing the same
copy would lose one another's change: the GET serves an ETag, the PUT refuses a stale If-Match
with 412 and changes nothing (both databases)."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.safety import resources
from backend.domain.safety.resources import CrisisResourcesInput
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    StaffAccount,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock
from tests.if_match import ConditionalPut, check_conditional_put
from tests.races import race, second_refused_as_stale

URL = "/api/v1/clinic/crisis-resources/en-GB"


def _body(headline: str, phone: str = "999", contact: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "headline": headline,
        "resources": [{"label": "Emergency services", "phone": phone}],
    }
    if contact is not None:
        body["clinicContact"] = contact
    return body


@pytest.fixture
async def world(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


async def test_a_stale_if_match_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    world: World,
    clock: MovableClock,
) -> None:
    await check_conditional_put(
        api,
        clock,
        ConditionalPut(
            get_url=URL,
            put_url=URL,
            reader=world.staff["clinician_a"].headers,
            admin=world.staff["admin_a"].headers,
            bodies=(
                _body("Call 999 now.", contact="Clinic A, 020 7946 0001"),
                _body("Call 999 or 112 now.", phone="112"),
                _body("Call us.", contact="Clinic A"),
                _body("Call 999 now."),
            ),
        ),
    )


@pytest.mark.parametrize("existing", [False, True], ids=["new-entry", "existing-entry"])
async def test_two_writes_of_the_same_version_do_not_both_succeed(
    api: AsyncTestClient[Litestar],  # noqa: F811
    world: World,
    clock: MovableClock,
    existing: bool,
) -> None:
    """Both transactions check the same If-Match: the second waits while the first holds the
    clinic (PostgreSQL: its row locked; SQLite: one writer at a time), then sees the new entry
    and is refused, so the first admin's change is not lost."""
    admin = world.staff["admin_a"]
    principal = admin.principal()
    clinic_id = principal.clinic_id
    assert clinic_id is not None
    if existing:
        saved = await api.put(URL, headers=admin.headers, json=_body("Before"))
        assert saved.status_code == 200, saved.text
    read = await api.get(URL, headers=admin.headers)
    version = frozenset({read.headers["etag"].strip('"')})
    first, second = _body("First"), _body("Second", phone="112")

    def writer(body: dict[str, Any]) -> Callable[[AsyncSession], Awaitable[None]]:
        data = CrisisResourcesInput(
            headline=body["headline"],
            resources=tuple(resources.ResourceInput(**r) for r in body["resources"]),
        )

        async def write(session: AsyncSession) -> None:
            await resources.save_entry(
                session, principal, clinic_id, "en-GB", data, now=clock.now(), if_match=version
            )

        return write

    runtime = runtime_of(api)
    await second_refused_as_stale(runtime, writer(first), writer(second))
    shown = (await api.get(URL, headers=admin.headers)).json()
    assert (shown["source"], shown["headline"]) == ("clinic", "First")
    assert shown["resources"] == first["resources"]


async def test_a_delete_with_a_stale_if_match_removes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    world: World,
    clock: MovableClock,
) -> None:
    admin = world.staff["admin_a"]
    saved = await api.put(URL, headers=admin.headers, json=_body("Before"))
    assert saved.status_code == 200, saved.text
    read_tag = saved.headers["etag"]
    clock.advance(seconds=1)
    changed = await api.put(URL, headers=admin.headers, json=_body("After", phone="112"))
    assert changed.status_code == 200, changed.text

    refused = await api.delete(URL, headers={**admin.headers, "If-Match": read_tag})
    assert refused.status_code == 412, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await api.get(URL, headers=admin.headers)).json()["headline"] == "After"

    removed = await api.delete(URL, headers={**admin.headers, "If-Match": changed.headers["etag"]})
    assert removed.status_code == 204, removed.text
    assert (await api.get(URL, headers=admin.headers)).json()["source"] != "clinic"


async def test_a_save_racing_a_delete_is_not_lost(
    api: AsyncTestClient[Litestar],  # noqa: F811
    world: World,
    clock: MovableClock,
) -> None:
    """A delete holds the clinic; the save beside it waits, then stores its entry afresh (it
    used to update the row the delete had just removed, change nothing and answer 200)."""
    admin = world.staff["admin_a"]
    principal = admin.principal()
    clinic_id = principal.clinic_id
    assert clinic_id is not None
    assert (await api.put(URL, headers=admin.headers, json=_body("Before"))).status_code == 200
    data = CrisisResourcesInput(
        headline="Saved beside the delete",
        resources=(resources.ResourceInput(label="Emergency services", phone="999"),),
    )

    async def remove(session: AsyncSession) -> None:
        await resources.delete_entry(session, principal, clinic_id, "en-GB", now=clock.now())

    async def save(session: AsyncSession) -> None:
        await resources.save_entry(session, principal, clinic_id, "en-GB", data, now=clock.now())

    runtime = runtime_of(api)
    await race(runtime, remove, save)
    shown = (await api.get(URL, headers=admin.headers)).json()
    assert (shown["source"], shown["headline"]) == ("clinic", "Saved beside the delete")
