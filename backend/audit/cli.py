"""``interlude audit verify``: check every seal; exit 0 if intact, 1 if broken.

Events not sealed yet are reported as pending while younger than the grace period; an older one
is a failure (the sealer is not running).
"""

import argparse
import asyncio
from datetime import timedelta
from typing import Any

from backend.audit.service import SEAL_GRACE, AuditVerification, verify_audit_chain
from backend.config import Settings
from backend.db.engine import create_engine

EXIT_BROKEN = 1


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    audit = subparsers.add_parser("audit", help="the tamper-evident audit log")
    actions = audit.add_subparsers(dest="audit_action", required=True)
    verify = actions.add_parser(
        "verify", help="check every hash chain; exit 0 if intact, 1 if broken"
    )
    verify.add_argument(
        "--grace-seconds",
        type=float,
        default=SEAL_GRACE.total_seconds(),
        help="an event unsealed for longer than this is a failure (default: %(default)s)",
    )
    verify.set_defaults(handler=_verify)


def verdict(result: AuditVerification) -> str:
    if result.ok:
        line = f"audit log intact: {result.events} events in {result.chains} chains verified"
        if result.pending:
            line += f", {result.pending} recent events pending sealing"
        return line
    broken = result.first_broken
    assert broken is not None
    where = f"chain {broken.chain}"
    if broken.seq is not None:
        where += f", event {broken.seq}"
    if broken.event_id is not None:
        where += f" (id {broken.event_id})"
    return f"audit log BROKEN at {where}: {broken.reason}"


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    grace = timedelta(seconds=float(args.grace_seconds))

    async def run() -> AuditVerification:
        engine = create_engine(settings)
        try:
            return await verify_audit_chain(engine, grace=grace)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    print(verdict(result))  # noqa: T201
    return 0 if result.ok else EXIT_BROKEN
