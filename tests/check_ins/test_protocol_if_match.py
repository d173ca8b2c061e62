"""A clinic's check-in protocol override is replaced as a whole, so two admins editing the same
copy would lose one another's change: the GET of a modality serves an ETag, the PUT refuses a
stale If-Match with 412 and changes nothing (both databases)."""

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins import clinic_protocols
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock
from tests.if_match import ConditionalPut, check_conditional_put
from tests.races import second_refused_as_stale

URL = "/api/v1/clinic/check-in-protocols/n2o"


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


def _override(version: str, label: str) -> dict[str, Any]:
    return {
        "id": "clinic-a-n2o",
        "version": version,
        "extends": {"id": "n2o-default", "version": "1.0.0"},
        "source": "Clinic A adds a 48 h check",
        "steps": {
            "afterSession": [
                {
                    "id": "48h",
                    "label": label,
                    "offset": "PT48H",
                    "opens": "PT40H",
                    "closes": "PT56H",
                    "instruments": ["madrs-s"],
                }
            ]
        },
    }


async def test_a_stale_if_match_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    # The saved time has microseconds: the PUT's tag must still be the one a GET computes from
    # what the database gives back.
    clock.current = clock.current.replace(microsecond=123456)
    await check_conditional_put(
        api,
        clock,
        ConditionalPut(
            get_url=URL,
            put_url=URL,
            reader=people.staff["clinician_a"].headers,
            admin=people.staff["admin_a"].headers,
            bodies=(
                _override("1.0.0", "+48 h"),
                _override("1.0.1", "Two days"),
                _override("1.0.2", "Two days later"),
                _override("1.0.0", "+48 h"),  # an earlier version back in force
            ),
        ),
    )


async def test_two_writes_of_the_same_version_do_not_both_succeed(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """Both transactions check the same If-Match: the second waits while the first holds the
    clinic (PostgreSQL: its row locked; SQLite: one writer at a time), then sees the new override
    and is refused, so the first admin's change is not lost."""
    admin = people.staff["admin_a"]
    clinic_id = people.clinic_a
    read = await api.get(URL, headers=admin.headers)
    version = frozenset({read.headers["etag"].strip('"')})
    first, second = _override("1.0.0", "+48 h"), _override("1.1.0", "Two days")

    def writer(body: dict[str, Any]) -> Callable[[AsyncSession], Awaitable[None]]:
        async def write(session: AsyncSession) -> None:
            await clinic_protocols.save_override(
                session,
                clinic_id=clinic_id,
                modality="n2o",
                document=msgspec.json.encode(body),
                staff_id=admin.id,
                now=clock.now(),
                if_match=version,
            )

        return write

    runtime = runtime_of(api)
    await second_refused_as_stale(runtime, writer(first), writer(second))
    shown = (await api.get(URL, headers=admin.headers)).json()
    assert shown["override"] == first
    assert shown["override_saved_by"] == str(admin.id)


async def test_a_removal_with_a_stale_if_match_removes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    admin = people.staff["admin_a"].headers
    first = await api.put(URL, headers=admin, json=_override("1.0.0", "+48 h"))
    assert first.status_code == 200, first.text
    clock.advance(seconds=1)
    second = await api.put(URL, headers=admin, json=_override("1.0.1", "Two days"))
    assert second.status_code == 200, second.text

    refused = await api.delete(URL, headers={**admin, "If-Match": first.headers["etag"]})
    assert refused.status_code == 412, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await api.get(URL, headers=admin)).json()["source"] == "override"

    removed = await api.delete(URL, headers={**admin, "If-Match": second.headers["etag"]})
    assert removed.status_code == 200, removed.text
    shown = await api.get(URL, headers=admin)
    assert shown.json()["source"] == "default"
    assert removed.headers["etag"] == shown.headers["etag"]
