"""The clinic's settings are replaced as a whole, so two admins editing the same copy would lose
one another's change: the GET of the clinic serves an ETag (the settings have no GET of their
own), PUT /settings refuses a stale If-Match with 412 and changes nothing (both databases)."""

from collections.abc import Awaitable, Callable

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.identity import staff
from tests.identity.conftest import MovableClock, World, runtime_of
from tests.if_match import ConditionalPut, check_conditional_put
from tests.races import second_refused_as_stale

CLINIC = "/api/v1/clinic"
SETTINGS = "/api/v1/clinic/settings"


def _settings(totp_for_all: bool) -> dict[str, bool]:
    return {"totp_required_for_all_staff": totp_for_all}


async def test_a_stale_if_match_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    admin = world.staff["admin_a"].headers  # only clinic admins may read the clinic
    await check_conditional_put(
        api,
        clock,
        ConditionalPut(
            get_url=CLINIC,
            put_url=SETTINGS,
            reader=admin,
            admin=admin,
            bodies=(_settings(True), _settings(False), _settings(True), _settings(False)),
        ),
    )


async def test_the_other_clinic_s_tag_does_not_change(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    other = world.staff["admin_b"].headers
    before = (await api.get(CLINIC, headers=other)).headers["etag"]
    saved = await api.put(SETTINGS, headers=world.staff["admin_a"].headers, json=_settings(True))
    assert saved.status_code == 200, saved.text
    assert (await api.get(CLINIC, headers=other)).headers["etag"] == before


async def test_two_writes_of_the_same_version_do_not_both_succeed(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    """Both transactions check the same If-Match: the second waits while the first holds the
    clinic (PostgreSQL: its row locked; SQLite: one writer at a time), then sees the new settings
    and is refused, so the first admin's change is not lost."""
    admin = world.staff["admin_a"]
    principal = admin.principal()
    read = await api.get(CLINIC, headers=admin.headers)
    assert read.json()["totp_required_for_all_staff"] is False
    version = frozenset({read.headers["etag"].strip('"')})
    runtime = runtime_of(api)

    def writer(totp_for_all: bool) -> Callable[[AsyncSession], Awaitable[None]]:
        async def write(session: AsyncSession) -> None:
            await staff.update_clinic_settings(
                session,
                runtime,
                principal,
                totp_required_for_all_staff=totp_for_all,
                if_match=version,
            )

        return write

    await second_refused_as_stale(runtime, writer(True), writer(False))
    shown = await api.get(CLINIC, headers=admin.headers)
    assert shown.json()["totp_required_for_all_staff"] is True
