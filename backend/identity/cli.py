"""``interlude clinic create`` and ``interlude staff create``: bootstrap a fresh install.

The one-time password (and, for roles that need it, the TOTP provisioning URI) is printed once
and never stored in plain text; whoever runs the command hands it to the person.
"""

import argparse
import asyncio
import sys
from typing import Any
from uuid import UUID

from backend.config import Settings
from backend.crypto import BlindIndexer
from backend.db.engine import create_engine, create_sessionmaker
from backend.identity import repositories, staff
from backend.identity.roles import Role, totp_required
from backend.keyring.secrets import load_service_secrets
from backend.keyring.service import Keyring
from backend.lib.clock import SystemClock
from backend.lib.errors import DomainError
from backend.state import Runtime
from backend.system.keys import load_kek

EXIT_REFUSED = 1


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    clinic = subparsers.add_parser("clinic", help="clinics (tenants)")
    clinic_actions = clinic.add_subparsers(dest="clinic_action", required=True)
    create_clinic = clinic_actions.add_parser("create", help="create a clinic; prints its id")
    create_clinic.add_argument("--name", required=True)
    create_clinic.add_argument(
        "--totp-for-all-staff",
        action="store_true",
        help="require TOTP of clinicians and researchers too (always required of admins)",
    )
    create_clinic.add_argument(
        "--time-zone",
        default="UTC",
        help="the clinic's IANA time zone, e.g. Europe/Paris (the dashboard's times and 'today')",
    )
    create_clinic.set_defaults(handler=_create_clinic)
    clinic_list = clinic_actions.add_parser("list", help="list clinics (id and name)")
    clinic_list.set_defaults(handler=_list_clinics)

    member = subparsers.add_parser("staff", help="staff accounts")
    member_actions = member.add_subparsers(dest="staff_action", required=True)
    create_staff = member_actions.add_parser(
        "create", help="create a staff account; prints a one-time password once"
    )
    create_staff.add_argument("--clinic", help="clinic id or exact name (not for operators)")
    create_staff.add_argument(
        "--role", required=True, choices=[r.value for r in Role if r is not Role.PATIENT]
    )
    create_staff.add_argument("--email", required=True)
    create_staff.add_argument("--name", required=True)
    create_staff.set_defaults(handler=_create_staff)


def _runtime(settings: Settings) -> Runtime:
    clock = SystemClock()
    kek = load_kek(settings)
    secrets = load_service_secrets(settings)
    runtime = Runtime(
        settings=settings,
        clock=clock,
        kek=kek,
        secrets=secrets,
        keyring=Keyring(kek, clock=clock),
        blind_indexes=BlindIndexer(secrets.blind_index_root),
    )
    runtime.engine = create_engine(settings)
    runtime.sessionmaker = create_sessionmaker(runtime.engine)
    return runtime


def _say(line: str) -> None:
    print(line)  # noqa: T201  (the command's output)


def _refuse(error: DomainError) -> int:
    print(f"interlude: {error.detail}", file=sys.stderr)  # noqa: T201
    return EXIT_REFUSED


def _create_clinic(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> int:
        runtime = _runtime(settings)
        try:
            async with runtime.require_sessionmaker()() as session:
                clinic = await staff.create_clinic(
                    session,
                    runtime,
                    name=args.name,
                    totp_required_for_all_staff=args.totp_for_all_staff,
                    time_zone=args.time_zone,
                )
                await session.commit()
        except DomainError as error:
            return _refuse(error)
        finally:
            await runtime.require_engine().dispose()
        _say(f"clinic {clinic.id} {clinic.name}")
        return 0

    return asyncio.run(run())


def _list_clinics(settings: Settings, _args: argparse.Namespace) -> int:
    async def run() -> int:
        runtime = _runtime(settings)
        try:
            async with runtime.require_sessionmaker()() as session:
                for clinic in await repositories.list_clinics(session):
                    _say(f"{clinic.id} {clinic.name}")
        finally:
            await runtime.require_engine().dispose()
        return 0

    return asyncio.run(run())


def _create_staff(settings: Settings, args: argparse.Namespace) -> int:
    role = Role(args.role)

    async def run() -> int:
        runtime = _runtime(settings)
        try:
            async with runtime.require_sessionmaker()() as session:
                clinic_id = None
                clinic_wants_totp = False
                if args.clinic:
                    try:
                        clinic = await repositories.get_clinic(session, UUID(args.clinic))
                    except ValueError:
                        clinic = await repositories.get_clinic_by_name(session, args.clinic)
                    if clinic is None:
                        print("interlude: no such clinic", file=sys.stderr)  # noqa: T201
                        return EXIT_REFUSED
                    clinic_id, clinic_wants_totp = clinic.id, clinic.totp_required_for_all_staff
                created = await staff.create_staff(
                    session,
                    runtime,
                    clinic_id=clinic_id,
                    role=role,
                    email=args.email,
                    name=args.name,
                    created_by=None,
                    provision_totp=totp_required(
                        role, clinic_requires_totp_for_all_staff=clinic_wants_totp
                    ),
                )
                await session.commit()
        except DomainError as error:
            return _refuse(error)
        finally:
            await runtime.require_engine().dispose()
        _say(f"staff {created.staff.id} ({role.value})")
        _say(f"one-time password: {created.one_time_password}")
        if created.totp_provisioning_uri is not None:
            _say(f"TOTP provisioning URI (scan once): {created.totp_provisioning_uri}")
        _say("These secrets are shown once and are not stored in readable form.")
        return 0

    return asyncio.run(run())
