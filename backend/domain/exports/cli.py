"""``interlude export``: the research export for operators, written straight to a directory.

The same pipeline as the background jobs (`jobs.produce_bundle`): consenting patients only,
k-anonymity gate, de-identification, streamed Parquet/CSV/FHIR NDJSON with codebook, README and
checksums. The cohort is one or more clinics (``--clinic``, id or exact name) or a study
(``--study``, its consenting clinics; a stable-id study's ids are the ones its API exports use).
Without a study the pseudonym key is new and forgotten when the command ends. Each run is
audited (purpose ``research``) for every clinic it read.
"""

import argparse
import asyncio
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import select

from backend.audit.service import AuditEvent, record_audit
from backend.config import Settings
from backend.db.engine import create_engine, create_sessionmaker
from backend.db.models.clinic import Clinic
from backend.domain.exports import repository
from backend.domain.exports.deid import CohortChanged, DeidentificationProfile
from backend.domain.exports.jobs import (
    MAX_ATTEMPTS,
    STUDIES_TABLE,
    BundleOutcome,
    ExportSpec,
    Progress,
    Sessions,
    open_pseudonym_key,
    produce_bundle,
)
from backend.domain.exports.kanon import ExportRefused, KAnonymityPolicy
from backend.domain.exports.writers import ExportFormats
from backend.keyring.service import Keyring
from backend.lib.clock import SystemClock
from backend.system.keys import load_kek

EXIT_REFUSED = 1
_FORMATS = ("parquet", "csv", "fhir_ndjson")


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    export = subparsers.add_parser(
        "export", help="write a de-identified research export to a directory"
    )
    export.add_argument(
        "--clinic", action="append", default=[], help="clinic id or exact name (repeatable)"
    )
    export.add_argument("--study", help="study name: its consenting clinics and its study ids")
    export.add_argument("--out", required=True, type=Path, help="directory (created; empty)")
    export.add_argument(
        "--formats", default="parquet,csv", help=f"comma-separated, of {', '.join(_FORMATS)}"
    )
    export.add_argument("--k", type=int, default=5, help="k-anonymity to reach (at least 5)")
    export.add_argument(
        "--date-shift", action="store_true", help="per-patient shifted dates (limited data set)"
    )
    export.add_argument(
        "--free-text", action="store_true", help="include free text (needs review before use)"
    )
    export.set_defaults(handler=_export)


def _say(line: str) -> None:
    print(line)  # noqa: T201  (the command's output)


def _refuse(message: str) -> int:
    print(f"interlude: {message}", file=sys.stderr)  # noqa: T201
    return EXIT_REFUSED


def _export(settings: Settings, args: argparse.Namespace) -> int:
    formats = {f.strip() for f in str(args.formats).split(",") if f.strip()}
    if not formats or not formats <= set(_FORMATS):
        return _refuse(f"--formats takes {', '.join(_FORMATS)}")
    if args.k < 5:
        return _refuse("--k must be at least 5")
    if bool(args.clinic) == bool(args.study):
        return _refuse("name the cohort with --clinic (one or more) or --study, not both")
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        return _refuse(f"{out} is not empty")
    return asyncio.run(_run(settings, args, formats, out, out.exists()))


async def _run(
    settings: Settings, args: argparse.Namespace, formats: set[str], out: Path, out_existed: bool
) -> int:
    clock = SystemClock()
    keyring = Keyring(load_kek(settings), clock=clock)
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    try:
        key = os.urandom(32)
        id_scope: str = "per_export"
        name = "operator-export"
        async with sessions() as session:
            connection = await session.connection()
            if args.study:
                study = await repository.find_study(connection, args.study)
                if study is None:
                    return _refuse("no such study")
                name = str(study.name)
                clinic_ids = await repository.study_clinics(connection, study.id)
                if study.stable_ids and study.pseudonym_key_ct is not None:
                    id_scope = "per_study"
                    key = await open_pseudonym_key(
                        session,
                        keyring,
                        owner_id=study.id,
                        table=STUDIES_TABLE,
                        blob=study.pseudonym_key_ct,
                    )
            else:
                clinic_ids = []
                for given in args.clinic:
                    found = await _clinic(connection, given)
                    if found is None:
                        return _refuse(f"no clinic with id or name {given!r}")
                    clinic_ids.append(found)
        spec = ExportSpec(
            name=name,
            clinic_ids=tuple(clinic_ids),
            profile=DeidentificationProfile(
                id_scope="per_study" if id_scope == "per_study" else "per_export",
                include_free_text=args.free_text,
                date_shift=args.date_shift,
            ),
            policy=KAnonymityPolicy(k=args.k),
            formats=ExportFormats(
                parquet="parquet" in formats,
                csv="csv" in formats,
                fhir_ndjson="fhir_ndjson" in formats,
            ),
        )
        try:
            outcome = await write_bundle(
                sessions, keyring, spec, key=key, out=out, out_existed=out_existed
            )
        except ExportRefused as refusal:
            await _audit(sessions, clinic_ids, clock, "failed")
            return _refuse(f"export refused: {refusal.detail}")
        except CohortChanged:
            await _audit(sessions, clinic_ids, clock, "failed")
            return _refuse(
                f"the cohort kept changing while it was exported ({MAX_ATTEMPTS} runs); "
                "nothing was kept, run the command again"
            )
        await _audit(sessions, clinic_ids, clock, "success")
        for table, rows in outcome.result.row_counts.items():
            _say(f"{table}: {rows} rows")
        _say(f"k achieved: {outcome.k_anonymity.k_achieved} (required {args.k})")
        _say(f"written to {out}")
        return 0
    finally:
        await engine.dispose()


async def write_bundle(
    sessions: Sessions,
    keyring: Keyring,
    spec: ExportSpec,
    *,
    key: bytes,
    out: Path,
    out_existed: bool,
    progress: Progress | None = None,
) -> BundleOutcome:
    """`produce_bundle` into ``out``, run again (from an empty directory) when the cohort
    changed between its passes, as often as the background runner would (`MAX_ATTEMPTS`).
    Whatever stops it leaves no partial bundle behind: a half-written folder without its
    manifest looks like an export and is not one."""
    attempt = 1
    while True:
        try:
            return await produce_bundle(
                sessions, keyring, spec, key=key, directory=out, progress=progress
            )
        except BaseException as error:
            await anyio.to_thread.run_sync(_restore, out, out_existed)
            if not isinstance(error, CohortChanged) or attempt == MAX_ATTEMPTS:
                raise
        attempt += 1


def _restore(out: Path, existed: bool) -> None:
    """Back to what the command found: no directory, or an empty one (`_export` checked)."""
    if not out.exists():
        return
    if not existed:
        shutil.rmtree(out)
        return
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


async def _clinic(connection: Any, given: str) -> uuid.UUID | None:
    clinics = Clinic.__table__  # type: ignore[attr-defined]
    try:
        by_id = clinics.c.id == uuid.UUID(given)
    except ValueError:
        by_id = None
    condition = clinics.c.name == given if by_id is None else by_id
    found = await connection.scalar(select(clinics.c.id).where(condition))
    return found if isinstance(found, uuid.UUID) else None


async def _audit(
    sessions: Any, clinic_ids: list[uuid.UUID], clock: SystemClock, outcome: str
) -> None:
    async with sessions() as session:
        for clinic_id in clinic_ids:
            await record_audit(
                session,
                AuditEvent(
                    actor_id=None,
                    actor_role="operator",
                    action="export.cli",
                    resource_type="clinic",
                    resource_id=str(clinic_id),
                    clinic_id=clinic_id,
                    purpose="research",
                    request_id=None,
                    outcome=outcome,
                    at=clock.now(),
                ),
            )
        await session.commit()
