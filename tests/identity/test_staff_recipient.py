"""Alerts are queued for a staff id; the e-mail address is decrypted only when sending."""

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.outbox.enqueue import RecipientType
from backend.domain.outbox.recipients import RecipientUnavailable
from backend.identity.roles import Role
from tests.identity.conftest import make_clinic, make_staff, runtime_of


async def test_a_staff_id_resolves_to_the_decrypted_email_at_send_time(
    api: AsyncTestClient[Litestar],
) -> None:
    clinic = await make_clinic(api, "Resolver Clinic")
    clinician = await make_staff(api, Role.CLINICIAN, clinic, "on.call@example.org")
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        address = await runtime.recipients.resolve(session, RecipientType.STAFF, str(clinician.id))
        assert address == "on.call@example.org"
        for unknown in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
            with pytest.raises(RecipientUnavailable):
                await runtime.recipients.resolve(session, RecipientType.STAFF, unknown)


async def test_an_erased_staff_member_cannot_be_reached(api: AsyncTestClient[Litestar]) -> None:
    clinic = await make_clinic(api, "Erasure Clinic")
    clinician = await make_staff(api, Role.CLINICIAN, clinic, "leaver@example.org")
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        await runtime.keyring.shred(session, clinician.id)
        await session.commit()
    async with runtime.require_sessionmaker()() as session:
        with pytest.raises(RecipientUnavailable):
            await runtime.recipients.resolve(session, RecipientType.STAFF, str(clinician.id))
