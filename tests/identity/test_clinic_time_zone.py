"""A clinic's own time zone (the dashboard's times and "today"): new clinics are in UTC until an
admin sets their zone through PUT /api/v1/clinic/settings; a settings PUT without a zone keeps
the one in force; a name the server's tz database does not know is refused with a problem
document that points at the field, and nothing changes (both databases)."""

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.identity import staff
from backend.lib.errors import InvalidInput
from tests.identity.conftest import World, runtime_of

CLINIC = "/api/v1/clinic"
SETTINGS = "/api/v1/clinic/settings"


async def test_an_admin_sets_the_clinic_s_zone_and_a_put_without_one_keeps_it(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    admin = world.staff["admin_a"].headers
    before = await api.get(CLINIC, headers=admin)
    assert before.json()["time_zone"] == "UTC"

    saved = await api.put(
        SETTINGS,
        headers=admin,
        json={"totp_required_for_all_staff": False, "time_zone": "America/New_York"},
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["time_zone"] == "America/New_York"
    # The entity tag covers the zone: a page drawn before the change is outdated.
    assert saved.headers["etag"] != before.headers["etag"]

    kept = await api.put(SETTINGS, headers=admin, json={"totp_required_for_all_staff": True})
    assert kept.status_code == 200, kept.text
    assert kept.json() | {"totp_required_for_all_staff": False} == saved.json()

    # The other clinic's zone is its own.
    other = await api.get(CLINIC, headers=world.staff["admin_b"].headers)
    assert other.json()["time_zone"] == "UTC"


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "Europe/Paris ", "x" * 80]
)
async def test_an_unknown_zone_is_refused_and_changes_nothing(
    api: AsyncTestClient[Litestar], world: World, zone: str
) -> None:
    admin = world.staff["admin_a"].headers
    before = await api.get(CLINIC, headers=admin)
    refused = await api.put(
        SETTINGS, headers=admin, json={"totp_required_for_all_staff": True, "time_zone": zone}
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert [e["pointer"] for e in problem["errors"]] == ["/time_zone"]
    assert zone.strip() == "" or zone not in refused.text.replace(SETTINGS, "")
    after = await api.get(CLINIC, headers=admin)
    assert after.json() == before.json()
    assert after.headers["etag"] == before.headers["etag"]


async def test_an_operator_creates_a_clinic_in_its_zone(api: AsyncTestClient[Litestar]) -> None:
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        assert isinstance(session, AsyncSession)
        clinic = await staff.create_clinic(
            session,
            runtime,
            name="Clinique du Parc",
            totp_required_for_all_staff=False,
            time_zone="Europe/Paris",
        )
        await session.commit()
    assert staff.clinic_view(clinic).time_zone == "Europe/Paris"
    async with runtime.require_sessionmaker()() as session:
        with pytest.raises(InvalidInput):
            await staff.create_clinic(
                session,
                runtime,
                name="Clinic nowhere",
                totp_required_for_all_staff=False,
                time_zone="Nowhere/At_All",
            )
