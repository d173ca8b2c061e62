"""``interlude demo``: seed the synthetic demo clinic and print its staff logins once."""

import argparse
import asyncio
import sys
from typing import Any

from backend.config import Settings
from backend.domain.demo.seed import DEMO_CLINIC_NAME, seed_demo_clinic
from backend.identity import repositories

EXIT_REFUSED = 1


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    demo = subparsers.add_parser(
        "demo",
        help="seed a synthetic demo clinic (staff logins printed once); never in production",
    )
    demo.add_argument("--patients", type=int, default=10, help="how many patients (default 10)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (same seed, same clinic)")
    demo.set_defaults(handler=_demo)


def _say(line: str) -> None:
    print(line)  # noqa: T201  (the command's output)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from backend.db import migrate
    from backend.identity.cli import _runtime

    if settings.is_production:
        print("interlude: the demo clinic is not for production", file=sys.stderr)  # noqa: T201
        return EXIT_REFUSED
    if settings.auto_migrate:
        migrate.upgrade(settings)

    async def run() -> int:
        runtime = _runtime(settings)
        try:
            async with runtime.require_sessionmaker()() as session:
                if await repositories.get_clinic_by_name(session, DEMO_CLINIC_NAME) is not None:
                    print(  # noqa: T201
                        "interlude: the demo clinic exists already (its logins were shown when "
                        "it was made); use a fresh data directory for a new one",
                        file=sys.stderr,
                    )
                    return EXIT_REFUSED
            demo = await seed_demo_clinic(
                runtime, now=runtime.clock.now(), patient_count=args.patients, seed=args.seed
            )
        finally:
            await runtime.require_engine().dispose()
        _say(f"demo clinic {demo.clinic_id}: {len(demo.patient_ids)} synthetic patients")
        _say("Staff logins (shown once; add the TOTP secret to an authenticator app):")
        for login in demo.logins:
            _say(f"  {login.role.value:13} {login.email}")
            _say(f"      password:    {login.password}")
            _say(f"      TOTP secret: {login.totp_secret}")
            _say(f"      TOTP URI:    {login.totp_uri}")
        host = settings.host if settings.host not in {"0.0.0.0", "::"} else "127.0.0.1"  # noqa: S104
        _say(f"Now run `interlude serve` and open http://{host}:{settings.port}/dashboard/")
        return 0

    return asyncio.run(run())
