"""``interlude audit verify``: recompute every audit chain; exit 0 if intact, 1 if broken."""

import argparse
import asyncio
from typing import Any

from backend.audit.service import AuditVerification, verify_audit_chain
from backend.config import Settings
from backend.db.engine import create_engine

EXIT_BROKEN = 1


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    audit = subparsers.add_parser("audit", help="the tamper-evident audit log")
    actions = audit.add_subparsers(dest="audit_action", required=True)
    verify = actions.add_parser(
        "verify", help="recompute every hash chain; exit 0 if intact, 1 if broken"
    )
    verify.set_defaults(handler=_verify)


def verdict(result: AuditVerification) -> str:
    if result.ok:
        return f"audit log intact: {result.events} events in {result.chains} chains verified"
    broken = result.first_broken
    assert broken is not None
    where = f"chain {broken.chain}, event {broken.seq}"
    if broken.event_id is not None:
        where += f" (id {broken.event_id})"
    return f"audit log BROKEN at {where}: {broken.reason}"


def _verify(settings: Settings, _args: argparse.Namespace) -> int:
    async def run() -> AuditVerification:
        engine = create_engine(settings)
        try:
            return await verify_audit_chain(engine)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    print(verdict(result))  # noqa: T201
    return 0 if result.ok else EXIT_BROKEN
