"""Studies are shared by consent: a clinic joins only when a member invites it, and its admin
can withdraw it, after which no export written holds its patients. On both databases.

The app's own export runner is held back (timers every hour) so each test runs jobs when it
chooses, with runners made here: a job queued or running when a clinic withdraws is the point.
"""

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.config import Settings
from backend.db.models.audit_event import AuditLogEntry
from backend.domain.exports import repository
from backend.domain.exports.jobs import ExportRunner
from backend.identity.roles import Role
from tests.conftest import SettingsFactory
from tests.exports.world import ExportWorld, build_world, request_export, unpack
from tests.identity.conftest import (
    MovableClock,
    StaffAccount,
    log_in,
    make_clinic,
    make_staff,
    runtime_of,
)

STUDIES = "/api/v1/exports/studies"
PROBLEM = "application/problem+json"


@pytest.fixture
def settings(database_url: str, make_settings: SettingsFactory) -> Settings:
    # The app's runner ticks once at start (no job yet), then not during the test.
    return make_settings(database_url, timer_interval_seconds="3600")


@dataclass
class Clinics:
    """Three clinics with an admin and a researcher each, and a clinician of the first."""

    ids: dict[str, uuid.UUID]
    staff: dict[str, StaffAccount]


async def _clinics(api: AsyncTestClient[Litestar], clock: MovableClock) -> Clinics:
    ids = {name: await make_clinic(api, f"Study Clinic {name.upper()}") for name in "abc"}
    staff = {}
    for name, clinic in ids.items():
        staff[f"admin_{name}"] = await make_staff(
            api, Role.CLINIC_ADMIN, clinic, f"admin.{name}@studies.example"
        )
        staff[f"researcher_{name}"] = await make_staff(
            api, Role.RESEARCHER, clinic, f"res.{name}@studies.example"
        )
    staff["clinician_a"] = await make_staff(api, Role.CLINICIAN, ids["a"], "doc.a@studies.example")
    for account in staff.values():
        await log_in(api, account, clock)
    return Clinics(ids=ids, staff=staff)


async def _study(api: AsyncTestClient[Litestar], admin: StaffAccount, name: str) -> str:
    created = await api.post(STUDIES, headers=admin.headers, json={"name": name})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _invite(
    api: AsyncTestClient[Litestar], admin: StaffAccount, study_id: str, clinic: uuid.UUID
) -> Any:
    return await api.post(
        f"{STUDIES}/{study_id}/invitations", headers=admin.headers, json={"clinic_id": str(clinic)}
    )


async def _join(api: AsyncTestClient[Litestar], admin: StaffAccount, study_id: str) -> Any:
    return await api.post(f"{STUDIES}/{study_id}/clinics", headers=admin.headers)


async def _withdraw(
    api: AsyncTestClient[Litestar], admin: StaffAccount, study_id: str, clinic: uuid.UUID
) -> Any:
    return await api.delete(f"{STUDIES}/{study_id}/clinics/{clinic}", headers=admin.headers)


async def _stored(api: AsyncTestClient[Litestar], study_id: str) -> tuple[list[str], list[str]]:
    """(member clinics, invited clinics) as stored, whatever the API would show."""
    async with runtime_of(api).require_sessionmaker()() as session:
        connection = await session.connection()
        members = await repository.study_clinics(connection, uuid.UUID(study_id))
        invited = await repository.study_invitations(connection, uuid.UUID(study_id))
    return [str(c) for c in members], [str(c) for c in invited]


async def _audited(
    api: AsyncTestClient[Litestar], action: str, outcome: str, clinic: uuid.UUID | None
) -> int:
    e = AuditLogEntry.__table__.c  # type: ignore[attr-defined]
    async with runtime_of(api).require_sessionmaker()() as session:
        found = await (await session.connection()).scalar(
            select(func.count()).where(
                e.action == action, e.outcome == outcome, e.clinic_id == clinic
            )
        )
    return int(found or 0)


def _is_problem(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_a_clinic_joins_only_with_a_members_invitation_which_joining_consumes(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await _clinics(api, clock)
    a, b = world.ids["a"], world.ids["b"]
    admin_a, admin_b = world.staff["admin_a"], world.staff["admin_b"]
    study_id = await _study(api, admin_a, "invite-only")

    uninvited = await _join(api, admin_b, study_id)
    _is_problem(uninvited, 404)  # as if there were no such study: ids cannot be probed
    assert await _stored(api, study_id) == ([str(a)], [])
    assert await _audited(api, "export.study.join", "denied", b) == 1

    invited = await _invite(api, admin_a, study_id, b)
    assert invited.status_code == 201, invited.text
    assert invited.json()["clinic_ids"] == [str(a)]
    assert invited.json()["invited_clinic_ids"] == [str(b)]
    again = await _invite(api, admin_a, study_id, b)  # a second click changes nothing
    assert again.status_code == 200, again.text
    assert again.json() == invited.json()

    seen = await api.get(f"{STUDIES}/{study_id}", headers=admin_b.headers)
    assert seen.status_code == 200, seen.text
    # The invited clinic sees what it would join, not who else is invited.
    assert (seen.json()["clinic_ids"], seen.json()["invited_clinic_ids"]) == ([str(a)], None)

    joined = await _join(api, admin_b, study_id)
    assert joined.status_code == 200, joined.text
    assert sorted(joined.json()["clinic_ids"]) == sorted([str(a), str(b)])
    assert joined.json()["invited_clinic_ids"] == []
    twice = await _join(api, admin_b, study_id)
    assert twice.status_code == 200, twice.text
    assert twice.json() == joined.json()
    assert await _audited(api, "export.study.join", "success", b) == 2

    # The invitation was used up: after withdrawing, coming back needs a new one.
    assert (await _withdraw(api, admin_b, study_id, b)).status_code == 204
    _is_problem(await _join(api, admin_b, study_id), 404)
    assert await _stored(api, study_id) == ([str(a)], [])


async def test_only_a_member_admin_invites_and_only_a_clinic_that_exists_and_is_not_in(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await _clinics(api, clock)
    a, b = world.ids["a"], world.ids["b"]
    study_id = await _study(api, world.staff["admin_a"], "members-invite")
    admin_a, admin_c = world.staff["admin_a"], world.staff["admin_c"]

    _is_problem(await _invite(api, admin_c, study_id, b), 404)  # C is not a member
    assert await _audited(api, "export.study.invite", "denied", world.ids["c"]) == 1
    _is_problem(await _invite(api, admin_c, str(uuid.uuid4()), b), 404)
    _is_problem(await _invite(api, admin_a, str(uuid.uuid4()), b), 404)
    _is_problem(await _invite(api, world.staff["researcher_a"], study_id, b), 403)
    unknown = await _invite(api, admin_a, study_id, uuid.uuid4())
    _is_problem(unknown, 422)
    assert unknown.json()["errors"][0]["pointer"] == "/clinic_id"
    _is_problem(await _invite(api, admin_a, study_id, a), 409)  # a member already
    url = f"{STUDIES}/{study_id}/invitations"
    for body in ({}, {"clinic_id": "clinic b"}, {"clinic_id": str(b), "role": "member"}):
        _is_problem(await api.post(url, headers=admin_a.headers, json=body), 400)
    assert await _stored(api, study_id) == ([str(a)], [])


async def test_members_revoke_an_invitation_and_the_invited_clinic_declines_it(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await _clinics(api, clock)
    b, c = world.ids["b"], world.ids["c"]
    admin_a, admin_b, admin_c = (world.staff[f"admin_{n}"] for n in "abc")
    study_id = await _study(api, admin_a, "second-thoughts")
    for clinic in (b, c):
        assert (await _invite(api, admin_a, study_id, clinic)).status_code == 201
    url = f"{STUDIES}/{study_id}/invitations"

    # An invited clinic is no member: it declines its own invitation, no one else's.
    _is_problem(await api.delete(f"{url}/{b}", headers=admin_c.headers), 404)
    _is_problem(await api.delete(f"{url}/{b}", headers=world.staff["researcher_a"].headers), 403)
    assert (await api.delete(f"{url}/{b}", headers=admin_b.headers)).status_code == 204
    assert (await api.delete(f"{url}/{c}", headers=admin_a.headers)).status_code == 204
    _is_problem(await api.delete(f"{url}/{c}", headers=admin_a.headers), 404)
    assert await _stored(api, study_id) == ([str(world.ids["a"])], [])
    for admin in (admin_b, admin_c):
        _is_problem(await _join(api, admin, study_id), 404)
    assert await _audited(api, "export.study.uninvite", "success", world.ids["a"]) == 1


async def test_a_study_is_shown_to_its_members_and_invited_clinics_only(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await _clinics(api, clock)
    b = world.ids["b"]
    study_id = await _study(api, world.staff["admin_a"], "who-sees")
    assert (await _invite(api, world.staff["admin_a"], study_id, b)).status_code == 201
    shown = await api.get(f"{STUDIES}/{study_id}", headers=world.staff["researcher_a"].headers)
    assert shown.status_code == 200, shown.text
    assert shown.json() == {
        "id": study_id,
        "name": "who-sees",
        "stable_ids": False,
        "clinic_ids": [str(world.ids["a"])],
        "invited_clinic_ids": [str(b)],
    }
    outsider = world.staff["researcher_c"]
    _is_problem(await api.get(f"{STUDIES}/{study_id}", headers=outsider.headers), 404)
    assert await _audited(api, "export.study.read", "denied", world.ids["c"]) == 1
    admin_a = world.staff["admin_a"]
    _is_problem(await api.get(f"{STUDIES}/{uuid.uuid4()}", headers=admin_a.headers), 404)
    clinician = world.staff["clinician_a"]
    _is_problem(await api.get(f"{STUDIES}/{study_id}", headers=clinician.headers), 403)


async def test_an_admin_withdraws_only_their_own_clinic_and_the_last_one_leaves_it_closed(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await _clinics(api, clock)
    a, b, c = (world.ids[n] for n in "abc")
    admin_a, admin_b, admin_c = (world.staff[f"admin_{n}"] for n in "abc")
    study_id = await _study(api, admin_a, "leaving")
    assert (await _invite(api, admin_a, study_id, b)).status_code == 201
    assert (await _join(api, admin_b, study_id)).status_code == 200
    assert (await _invite(api, admin_a, study_id, c)).status_code == 201

    _is_problem(await _withdraw(api, admin_a, study_id, b), 404)  # B's consent is B's
    _is_problem(await _withdraw(api, world.staff["researcher_b"], study_id, b), 403)
    _is_problem(await _withdraw(api, admin_c, study_id, c), 404)  # invited, not a member
    _is_problem(await _withdraw(api, admin_b, str(uuid.uuid4()), b), 404)
    members = sorted([str(a), str(b)])
    assert await _stored(api, study_id) == (members, [str(c)])
    assert await _audited(api, "export.study.withdraw", "denied", a) == 1

    assert (await _withdraw(api, admin_b, study_id, b)).status_code == 204
    _is_problem(await _withdraw(api, admin_b, study_id, b), 404)
    assert await _stored(api, study_id) == ([str(a)], [str(c)])
    assert await _audited(api, "export.study.withdraw", "success", b) == 1
    _is_problem(await api.get(f"{STUDIES}/{study_id}", headers=admin_b.headers), 404)

    # The last member leaves: the study stays (its name is taken) but nobody is in it, its
    # invitations lapse, and nobody can export it or join it.
    assert (await _withdraw(api, admin_a, study_id, a)).status_code == 204
    assert await _stored(api, study_id) == ([], [])
    _is_problem(await _join(api, admin_c, study_id), 404)
    for researcher in ("researcher_a", "researcher_c"):
        refused = await api.post(
            "/api/v1/exports", headers=world.staff[researcher].headers, json={"study_id": study_id}
        )
        _is_problem(refused, 404)
    taken = await api.post(STUDIES, headers=admin_c.headers, json={"name": "leaving"})
    _is_problem(taken, 409)


# --- what leaves in an export -----------------------------------------------------------------


def _study_ids(bundle: Path) -> set[str]:
    return set(
        pq.read_table(bundle / "parquet" / "patients.parquet").column("study_id").to_pylist()
    )


def _runner(api: AsyncTestClient[Litestar], clock: MovableClock, instance: str) -> ExportRunner:
    runtime = runtime_of(api)
    return ExportRunner(
        runtime.require_sessionmaker(),
        runtime.keyring,
        clock,
        data_dir=runtime.settings.data_dir,
        instance=instance,
        group_patients=2,
    )


async def _job(api: AsyncTestClient[Litestar], job_id: str) -> Any:
    async with runtime_of(api).require_sessionmaker()() as session:
        job = await repository.get_job(await session.connection(), uuid.UUID(job_id))
    assert job is not None
    return job


async def _download(
    api: AsyncTestClient[Litestar], account: StaffAccount, job_id: str, target: Path
) -> Path:
    response = await api.get(f"/api/v1/exports/{job_id}/download", headers=account.headers)
    assert response.status_code == 200, response.text
    return unpack(response.content, "zip", target)


async def _two_site_study(api: AsyncTestClient[Litestar], world: ExportWorld, name: str) -> str:
    study_id = await _study(api, world.staff["admin_a"], name)
    assert (await _invite(api, world.staff["admin_a"], study_id, world.clinic_b)).status_code == 201
    assert (await _join(api, world.staff["admin_b"], study_id)).status_code == 200
    return study_id


async def test_a_clinic_that_was_not_invited_gets_no_other_clinics_patients(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await build_world(api, clock)
    study_id = await _study(api, world.staff["admin_a"], "clinic-a-cohort")
    # Knowing the study's id is not enough to join it...
    _is_problem(await _join(api, world.staff["admin_b"], study_id), 404)
    # ...so clinic B's researcher cannot have clinic A's patients exported to them.
    refused = await api.post(
        "/api/v1/exports",
        headers=world.staff["researcher_b"].headers,
        json={"study_id": study_id},
    )
    _is_problem(refused, 404)
    assert await _stored(api, study_id) == ([str(world.clinic_a)], [])
    assert await _runner(api, clock, "x").run_once() is None  # no job was queued at all


async def test_after_withdrawal_no_export_written_holds_the_clinics_patients(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    study_id = await _two_site_study(api, world, "two-sites-then-one")
    researcher_a, researcher_b = world.staff["researcher_a"], world.staff["researcher_b"]
    runner = _runner(api, clock, "r")
    both = len(world.consenting) + len(world.b_patients)
    # Before: one export written (not yet downloaded) and two queued, one of them B's.
    written = await request_export(api, researcher_a, study_id=study_id)
    assert await runner.run_once() == uuid.UUID(written["id"])
    assert (await _job(api, written["id"])).state == "done"
    queued = await request_export(api, researcher_a, study_id=study_id)
    queued_b = await request_export(api, researcher_b, study_id=study_id)

    left = await _withdraw(api, world.staff["admin_b"], study_id, world.clinic_b)
    assert left.status_code == 204, left.text

    # The archive written with B's patients is never handed out.
    gone = await api.get(f"/api/v1/exports/{written['id']}/download", headers=researcher_a.headers)
    _is_problem(gone, 410)
    assert (await _job(api, written["id"])).state == "expired"
    # B's own request ends: B may no longer export the study.
    ended = await api.get(f"/api/v1/exports/{queued_b['id']}", headers=researcher_b.headers)
    assert (ended.json()["state"], ended.json()["failure"]) == ("failed", "clinic_withdrew")
    refused = await api.post(
        "/api/v1/exports", headers=researcher_b.headers, json={"study_id": study_id}
    )
    _is_problem(refused, 404)
    # A's queued export and a new one hold clinic A's consenting patients only.
    fresh = await request_export(api, researcher_a, study_id=study_id)
    for job in (queued, fresh):
        assert await runner.run_once() == uuid.UUID(job["id"])
        bundle = await _download(api, researcher_a, job["id"], tmp_path / job["id"])
        assert len(_study_ids(bundle)) == len(world.consenting) < both
    assert await runner.run_once() is None
    assert await _audited(api, "export.study.withdraw", "success", world.clinic_b) == 4


class _HaltedMidWrite(ExportRunner):
    """A runner that stops at its first progress report after writing rows (the gate has
    cleared the cohort, part of the bundle is written) until `resume` is set."""

    def __init__(self, api: AsyncTestClient[Litestar], clock: MovableClock) -> None:
        runtime = runtime_of(api)
        super().__init__(
            runtime.require_sessionmaker(),
            runtime.keyring,
            clock,
            data_dir=runtime.settings.data_dir,
            instance="halted",
            group_patients=2,
        )
        self.halted = asyncio.Event()
        self.resume = asyncio.Event()
        self.ended = asyncio.Event()

    async def _run(self, job: Any) -> None:
        try:
            await super()._run(job)
        finally:
            self.ended.set()

    async def _progress(self, job_id: uuid.UUID, rows: int, percent: int) -> None:
        await super()._progress(job_id, rows, percent)
        if rows > 0 and not self.halted.is_set():
            self.halted.set()
            await self.resume.wait()


async def test_a_running_export_is_written_again_without_a_clinic_that_withdrew(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    study_id = await _two_site_study(api, world, "withdrawn-mid-run")
    researcher = world.staff["researcher_a"]
    job = await request_export(api, researcher, study_id=study_id)
    runner = _HaltedMidWrite(api, clock)
    await runner.tick()
    await asyncio.wait_for(runner.halted.wait(), timeout=60)
    assert (await _job(api, job["id"])).state == "running"

    left = await _withdraw(api, world.staff["admin_b"], study_id, world.clinic_b)
    assert left.status_code == 204, left.text
    runner.resume.set()
    await asyncio.wait_for(runner.ended.wait(), timeout=60)
    # The attempt wrote B's patients; it is not published but queued to run again.
    again = await _job(api, job["id"])
    assert (again.state, again.attempts, again.result_path) == ("queued", 1, None)
    assert again.clinic_ids == f'["{world.clinic_a}"]'

    assert await _runner(api, clock, "next").run_once() == uuid.UUID(job["id"])
    bundle = await _download(api, researcher, job["id"], tmp_path / "after")
    assert len(_study_ids(bundle)) == len(world.consenting)
