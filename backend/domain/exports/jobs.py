"""Running an export: the two passes over the database, and the background runner around them.

`produce_bundle` is the export itself, shared by the runner and ``interlude export``:

1. gate pass: read the consenting patients group by group (no responses), compute their
   quasi-identifiers, and ask the k-anonymity gate what may leave (`kanon.k_anonymity_gate`);
   `ExportRefused` says why not;
2. write pass: read the same patients again (with what the clinic recorded at their sessions),
   then their responses in bounded pages, decrypt, de-identify and stream into the bundle
   (`writers.ExportWriter`). Decrypting, de-identifying and writing run in a worker thread
   (`anyio.to_thread.run_sync`) while the next group or page is read, so the event loop keeps
   serving requests (engineering-notes §E.6). The sessions' rows (measurements and side
   effects) are held in a temporary file and written after every response (`_HeldRows`): the
   observations file holds the responses, then the sessions' rows, each in patient order,
   whatever the sizes of groups and pages.

The runner claims queued jobs with a lease (the outbox's pattern), one job at a time per
instance, in a background task so a long export never stalls the timer that started it. Work
goes to ``<data_dir>/exports/tmp/<job>-<attempt>/``; only the finished archive is renamed into
``<data_dir>/exports/``. An instance shutting down gives its job back at once (`ExportRunner.close`:
queued again, claimable by any instance). A job whose instance died keeps its lease until it
runs out; then any instance claims it again. Either way the next claim deletes the earlier
attempt's directory and starts over with the same pseudonym key, so the result is the same as if
nothing had happened. Results expire
(`DEFAULT_RETENTION`); the cleanup timer deletes expired and downloaded archives.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import uuid
import zipfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio.to_thread
import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.service import AuditEvent, record_audit
from backend.domain.exports import repository
from backend.domain.exports.deid import (
    CohortChanged,
    DeidentificationProfile,
    Pseudonymiser,
    quasi_identifiers,
)
from backend.domain.exports.kanon import (
    ExportRefused,
    KAnonymityDecision,
    KAnonymityPolicy,
    KAnonymityReport,
    QuasiIdentifiers,
    k_anonymity_gate,
)
from backend.domain.exports.records import DeidentifiedBatch, ObservationRow
from backend.domain.exports.source import (
    DEFAULT_GROUP_PATIENTS,
    RESPONSE_PAGE_ROWS,
    PreparedGroup,
    ResponseCursor,
    ResponsePage,
    SealedGroup,
    count_cohort,
    read_group,
    read_responses,
)
from backend.domain.exports.writers import (
    ExportDescription,
    ExportFormats,
    ExportResult,
    ExportWriter,
)
from backend.keyring.service import Keyring
from backend.lib.clock import Clock
from backend.version import VERSION

logger = logging.getLogger("interlude.exports")

EXPORTS_DIR: Final = "exports"
DEFAULT_LEASE: Final = timedelta(minutes=2)
DEFAULT_RETENTION: Final = timedelta(days=7)
DOWNLOAD_GRACE: Final = timedelta(minutes=10)
"""A downloaded archive is deleted this long after the download began (the response streams
from the file)."""
MAX_ATTEMPTS: Final = 3
"""A job that keeps failing to finish (cohort changing under it, crashes) stops being retried."""
PSEUDONYM_KEY_COLUMN: Final = "pseudonym_key_ct"
JOBS_TABLE: Final = "export_jobs"
STUDIES_TABLE: Final = "export_studies"
ARCHIVE_SUFFIX: Final = {"zip": ".zip", "tar": ".tar.gz"}
ARCHIVE_MEDIA_TYPE: Final = {"zip": "application/zip", "tar": "application/gzip"}
# Progress: the gate pass is the first tenth, writing the rest; 100 only when the archive exists.
_GATE_PERCENT: Final = 10
_WRITE_PERCENT: Final = 89
_GATE_GROUP_FACTOR: Final = 4
"""The gate pass reads no responses, so its groups are larger: each group costs a few
statements whatever its size (~6 ms), and 256 patients' histories are still read in a short
transaction."""

Progress = Callable[[int, int], Awaitable[None]]
"""Called with (rows written so far, percent done)."""


class ExportSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What to export: the cohort's clinics and how to de-identify and write it."""

    name: str
    """The bundle's name (a study slug): no PHI."""
    clinic_ids: tuple[uuid.UUID, ...]
    profile: DeidentificationProfile = DeidentificationProfile()
    policy: KAnonymityPolicy = KAnonymityPolicy()
    formats: ExportFormats = ExportFormats()


class BundleOutcome(msgspec.Struct, frozen=True, kw_only=True):
    result: ExportResult
    k_anonymity: KAnonymityReport


class LeaseLost(Exception):
    """Another instance took the job over (this one was too slow to renew its lease)."""

    message_is_safe_to_log = True


Sessions = async_sessionmaker[AsyncSession]
T = TypeVar("T")
C = TypeVar("C")


async def _groups(
    sessions: Sessions,
    keyring: Keyring,
    clinic_ids: Sequence[uuid.UUID],
    *,
    only: Callable[[uuid.UUID], bool] | None,
    group_patients: int,
    observations: bool = False,
) -> AsyncGenerator[SealedGroup, None]:
    """Groups of patients, the next one read while the caller works on the current one."""

    async def fetch(after: uuid.UUID | None) -> tuple[SealedGroup, uuid.UUID | None]:
        async with sessions() as session:
            return await read_group(
                session,
                keyring,
                clinic_ids,
                after=after,
                limit=group_patients,
                only=only,
                observations=observations,
            )

    async with contextlib.aclosing(_prefetched(fetch)) as groups:
        async for group in groups:
            yield group


async def _pages(
    sessions: Sessions, patient_ids: Sequence[uuid.UUID], *, page_rows: int
) -> AsyncGenerator[ResponsePage, None]:
    """The patients' responses page by page (`read_responses`), the next page read while the
    caller works on the current one: at most two pages in memory, whatever their histories."""

    async def fetch(
        after: ResponseCursor | None,
    ) -> tuple[ResponsePage, ResponseCursor | None]:
        async with sessions() as session:
            return await read_responses(session, patient_ids, after=after, limit=page_rows)

    async with contextlib.aclosing(_prefetched(fetch)) as pages:
        async for page in pages:
            if page:
                yield page


async def _prefetched(
    fetch: Callable[[C | None], Awaitable[tuple[T, C | None]]],
) -> AsyncGenerator[T, None]:
    """What `fetch` returns, cursor after cursor, each fetch started before the previous
    result is handed out."""
    pending = asyncio.ensure_future(fetch(None))
    try:
        while True:
            item, after = await pending
            if after is not None:
                pending = asyncio.ensure_future(fetch(after))
            yield item
            if after is None:
                return
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


def _gate_group(
    group: SealedGroup, profile: DeidentificationProfile
) -> dict[uuid.UUID, QuasiIdentifiers]:
    found = {}
    for timeline in group.open():
        qi = quasi_identifiers(timeline, profile)
        if qi is not None:
            found[timeline.patient.patient_id] = qi
    return found


def _write_group(
    group: SealedGroup,
    writer: ExportWriter,
    profile: DeidentificationProfile,
    decision: KAnonymityDecision,
    pseudonymiser: Pseudonymiser,
    held: "_HeldRows",
) -> tuple[PreparedGroup, int]:
    batch, prepared, recorded = group.prepare(
        profile=profile, decision=decision, pseudonymiser=pseudonymiser
    )
    writer.write(batch)
    # What the clinic recorded at the sessions goes after every response: held until then.
    held.add(recorded.observations)
    # Observations here are the sessions' (clinic-entered); responses follow page by page.
    written = len(batch.patients) + len(batch.sessions) + len(batch.observations)
    return prepared, written + len(batch.alerts)


class _HeldRows:
    """Observation rows held back until every response is written, in an anonymous temporary
    file beside the bundle (msgpack, one frame per group): the observations file holds the
    responses, then the sessions' rows, each in patient order, and the write pass reads both
    (the patients' history once, not once more for the sessions' rows), yet memory stays
    bounded by a group whatever the size of the export."""

    _encode = msgspec.msgpack.Encoder().encode
    _decode = msgspec.msgpack.Decoder(tuple[ObservationRow, ...]).decode

    def __init__(self, directory: Path) -> None:
        # No name in the bundle directory (unlinked at once); closed by `close`.
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115

    def add(self, rows: tuple[ObservationRow, ...]) -> None:
        if rows:
            frame = self._encode(rows)
            self._file.write(len(frame).to_bytes(8, "big") + frame)

    def write_to(self, writer: ExportWriter) -> int:
        """Every held group's rows, in the order they were held; returns how many."""
        self._file.seek(0)
        written = 0
        while header := self._file.read(8):
            rows = self._decode(self._file.read(int.from_bytes(header, "big")))
            writer.write(DeidentifiedBatch(observations=rows))
            written += len(rows)
        return written

    def close(self) -> None:
        self._file.close()


def _write_page(prepared: PreparedGroup, page: ResponsePage, writer: ExportWriter) -> int:
    observations, instruments = prepared.observations(page, writer.observations_schema)
    if observations is None:
        return 0
    writer.write_observations(observations, instruments)
    return int(observations.num_rows)


async def produce_bundle(
    sessions: Sessions,
    keyring: Keyring,
    spec: ExportSpec,
    *,
    key: bytes,
    directory: Path,
    progress: Progress | None = None,
    group_patients: int = DEFAULT_GROUP_PATIENTS,
    page_rows: int = RESPONSE_PAGE_ROWS,
) -> BundleOutcome:
    """Gate, then write the bundle into `directory` (created; must not hold files).

    Raises `ExportRefused` when k-anonymity cannot be met, `CohortChanged` when a patient's
    quasi-identifiers changed between the passes or a cleared patient left the cohort (run it
    again).
    """
    async with sessions() as session:
        patients_total, responses_total = await count_cohort(
            await session.connection(), spec.clinic_ids
        )
    cohort: dict[uuid.UUID, QuasiIdentifiers] = {}
    seen = 0
    async with contextlib.aclosing(
        _groups(
            sessions,
            keyring,
            spec.clinic_ids,
            only=None,
            group_patients=group_patients * _GATE_GROUP_FACTOR,
        )
    ) as groups:
        async for group in groups:
            cohort.update(await anyio.to_thread.run_sync(partial(_gate_group, group, spec.profile)))
            seen += len(group.patients)
            if progress is not None:
                await progress(0, _GATE_PERCENT * seen // max(patients_total, 1))
    decision = k_anonymity_gate(cohort, spec.policy)

    description = ExportDescription(
        name=spec.name,
        profile=spec.profile,
        k_anonymity=decision.report,
        software_version=VERSION,
    )
    writer = await anyio.to_thread.run_sync(
        partial(ExportWriter, directory, description, formats=spec.formats)
    )
    pseudonymiser = Pseudonymiser(key)
    rows = responses_done = exported = 0
    with writer, contextlib.closing(_HeldRows(directory)) as held:
        # Only patients the gate cleared: suppressed ones are left out of every table, and one
        # who consented after the gate ran waits for the next export.
        async with contextlib.aclosing(
            _groups(
                sessions,
                keyring,
                spec.clinic_ids,
                only=decision.cleared.__contains__,
                group_patients=group_patients,
                observations=True,
            )
        ) as groups:
            async for group in groups:
                prepared, written = await anyio.to_thread.run_sync(
                    partial(
                        _write_group, group, writer, spec.profile, decision, pseudonymiser, held
                    )
                )
                rows += written
                exported += len(group.patients)
                async with contextlib.aclosing(
                    _pages(sessions, group.patient_ids, page_rows=page_rows)
                ) as pages:
                    async for page in pages:
                        rows += await anyio.to_thread.run_sync(
                            partial(_write_page, prepared, page, writer)
                        )
                        responses_done += len(page)
                        if progress is not None:
                            share = min(responses_done, responses_total) / max(responses_total, 1)
                            await progress(rows, _GATE_PERCENT + int(_WRITE_PERCENT * share))
        if exported != len(decision.cleared):
            # A cleared patient left the cohort after the gate (consent withdrawn, erased): the
            # classes the gate counted may now hold fewer than k patients, and the report's
            # counts would be wrong. Each patient read here was cleared (`only`), so equal
            # counts mean the same patients.
            raise CohortChanged("a patient cleared by the k-anonymity gate left the cohort")
        rows += await anyio.to_thread.run_sync(held.write_to, writer)
        if progress is not None:  # renews the lease too
            await progress(rows, _GATE_PERCENT + _WRITE_PERCENT)
        result = await anyio.to_thread.run_sync(writer.finish)
    return BundleOutcome(result=result, k_anonymity=decision.report)


def write_archive(bundle: Path, target: Path, archive: str) -> tuple[str, int]:
    """Pack the bundle directory into one zip or gzipped tar; returns (sha256, size)."""
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    if archive == "zip":
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as packed:
            for path in files:
                packed.write(path, path.relative_to(bundle).as_posix())
    else:
        with tarfile.open(target, "w:gz") as packed:
            for path in files:
                packed.add(path, arcname=path.relative_to(bundle).as_posix(), recursive=False)
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest(), target.stat().st_size


# --- key material ---------------------------------------------------------------------------


async def new_pseudonym_key(
    session: AsyncSession, keyring: Keyring, *, owner_id: uuid.UUID, table: str
) -> bytes:
    """A fresh random pseudonym key, returned as ciphertext under the owner's own new data key
    (the owner is the job or the study, so destroying that data key destroys the key)."""
    await keyring.create_key(session, owner_id)
    keys = await keyring.owner_keys(session, owner_id, active_only=True)
    return keys.encrypt(
        table=table,
        column=PSEUDONYM_KEY_COLUMN,
        row_id=str(owner_id),
        plaintext=os.urandom(32),
    )


async def open_pseudonym_key(
    session: AsyncSession, keyring: Keyring, *, owner_id: uuid.UUID, table: str, blob: bytes
) -> bytes:
    keys = await keyring.owner_keys(session, owner_id)
    return keys.decrypt(
        table=table, column=PSEUDONYM_KEY_COLUMN, row_id=str(owner_id), blob=bytes(blob)
    )


def spec_of(job: Any, name: str) -> ExportSpec:
    return ExportSpec(
        name=name,
        clinic_ids=tuple(uuid.UUID(c) for c in msgspec.json.decode(job.clinic_ids, type=list[str])),
        profile=msgspec.json.decode(job.profile, type=DeidentificationProfile),
        policy=KAnonymityPolicy(k=job.k_required),
        formats=msgspec.json.decode(job.formats, type=ExportFormats),
    )


# --- the runner -----------------------------------------------------------------------------


class ExportRunner:
    """Claims and runs export jobs on this instance; `tick` and `cleanup` are timer jobs."""

    def __init__(
        self,
        sessions: Sessions,
        keyring: Keyring,
        clock: Clock,
        *,
        data_dir: Path,
        instance: str,
        lease: timedelta = DEFAULT_LEASE,
        retention: timedelta = DEFAULT_RETENTION,
        group_patients: int = DEFAULT_GROUP_PATIENTS,
    ) -> None:
        self._sessions = sessions
        self._keyring = keyring
        self._clock = clock
        self._dir = data_dir / EXPORTS_DIR
        self._instance = instance
        self._lease = lease
        self._retention = retention
        self._group_patients = group_patients
        self._task: asyncio.Task[None] | None = None
        self._job_id: uuid.UUID | None = None

    @property
    def directory(self) -> Path:
        return self._dir

    async def tick(self) -> None:
        """Start the next due job in the background unless one is running here already."""
        if self._task is not None and not self._task.done():
            return
        job = await self._claim()
        if job is not None:
            self._job_id = uuid.UUID(str(job.id))
            self._task = asyncio.create_task(self._run(job), name=f"export-{job.id}")

    async def run_once(self) -> uuid.UUID | None:
        """Claim and run one job to its end, here and now (operators, tests)."""
        job = await self._claim()
        if job is None:
            return None
        await self._run(job)
        return uuid.UUID(str(job.id))

    async def close(self) -> None:
        """At shutdown: stop the job in progress and give it back (queued), so another instance
        starts it again at once instead of waiting for the lease to run out."""
        task, job_id = self._task, self._job_id
        if task is None or job_id is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Released only now: the cancelled attempt has deleted its directory, so the next claim
        # (perhaps on this machine's other worker, sharing it) cannot race that clean-up.
        fields = {"export": str(job_id)}
        try:
            async with self._sessions() as session:
                released = await repository.release(
                    await session.connection(), job_id, instance=self._instance
                )
                await session.commit()
        except Exception as error:
            # The lease still runs out: another instance takes over later. The class name only,
            # as elsewhere (messages may carry data).
            logger.warning(
                "export not released at shutdown",
                extra={"fields": {**fields, "error": type(error).__name__}},
            )
            return
        if released:
            logger.info("export released at shutdown", extra={"fields": fields})

    async def _claim(self) -> Any:
        async with self._sessions() as session:
            job = await repository.claim_next(
                await session.connection(),
                instance=self._instance,
                now=self._clock.now(),
                lease=self._lease,
            )
            await session.commit()
        return job

    async def _finish(self, job: Any, state: str, **values: Any) -> bool:
        now = self._clock.now()
        async with self._sessions() as session:
            connection = await session.connection()
            done = await repository.finish(
                connection,
                job.id,
                instance=self._instance,
                values={"state": state, "finished_at": now, **values},
                # Done only with the clinics it ran with: one that left the study meanwhile
                # took itself out of the job (`service.withdraw_from_study`).
                cohort=job.clinic_ids if state == "done" else None,
            )
            if done and state != "queued":
                # The job's own key is needed by no one any more: destroying it makes this
                # export's pseudonyms unlinkable for good, backups included. That holds for a
                # study without stable ids too (its exports use the job's key, `_key`); a
                # stable-id study's key is the study's, not this one, and stays.
                await self._keyring.shred(session, job.id)
                await record_audit(
                    session,
                    AuditEvent(
                        actor_id=None,
                        actor_role="system",
                        action=f"export.{state}",
                        resource_type="export_job",
                        resource_id=str(job.id),
                        clinic_id=job.requester_clinic_id,
                        purpose="research",
                        request_id=None,
                        outcome="success" if state == "done" else "failed",
                        at=now,
                    ),
                )
            await session.commit()
        return done

    async def _key(self, job: Any) -> bytes:
        async with self._sessions() as session:
            if job.study_id is not None:
                study = await repository.get_study(await session.connection(), job.study_id)
                if study is not None and study.stable_ids and study.pseudonym_key_ct is not None:
                    return await open_pseudonym_key(
                        session,
                        self._keyring,
                        owner_id=study.id,
                        table=STUDIES_TABLE,
                        blob=study.pseudonym_key_ct,
                    )
            return await open_pseudonym_key(
                session,
                self._keyring,
                owner_id=job.id,
                table=JOBS_TABLE,
                blob=job.pseudonym_key_ct,
            )

    async def _cohort_narrowed(self, job: Any) -> bool:
        """The job is still this instance's, but a clinic left it since it was claimed."""
        async with self._sessions() as session:
            current = await repository.get_job(await session.connection(), job.id)
        return (
            current is not None
            and (current.state, current.claimed_by) == ("running", self._instance)
            and current.clinic_ids != job.clinic_ids
        )

    async def _name(self, job: Any) -> str:
        if job.study_id is not None:
            async with self._sessions() as session:
                study = await repository.get_study(await session.connection(), job.study_id)
            if study is not None:
                return str(study.name)
        return "clinic-export"

    async def _progress(self, job_id: uuid.UUID, rows: int, percent: int) -> None:
        async with self._sessions() as session:
            mine = await repository.record_progress(
                await session.connection(),
                job_id,
                instance=self._instance,
                rows=rows,
                percent=min(percent, 99),
                lease_until=self._clock.now() + self._lease,
            )
            await session.commit()
        if not mine:
            raise LeaseLost("the export job was taken over by another instance")

    async def _run(self, job: Any) -> None:
        job_id = uuid.UUID(str(job.id))
        fields = {"export": str(job_id), "attempt": job.attempts}
        tmp = self._dir / "tmp"
        # Whatever an earlier attempt left behind (it crashed or lost its lease) is discarded.
        for stale in tmp.glob(f"{job_id}-*"):
            await anyio.to_thread.run_sync(partial(shutil.rmtree, stale, ignore_errors=True))
        work = tmp / f"{job_id}-{job.attempts}"
        logger.info("export started", extra={"fields": fields})
        try:
            work.mkdir(parents=True)
            outcome = await produce_bundle(
                self._sessions,
                self._keyring,
                spec_of(job, await self._name(job)),
                key=await self._key(job),
                directory=work / "bundle",
                progress=partial(self._progress, job_id),
                group_patients=self._group_patients,
            )
            suffix = ARCHIVE_SUFFIX[job.archive]
            checksum, size = await anyio.to_thread.run_sync(
                partial(write_archive, work / "bundle", work / f"export{suffix}", job.archive)
            )
            final = self._dir / f"{job_id}{suffix}"
            # The archive appears complete or not at all.
            os.replace(work / f"export{suffix}", final)
            now = self._clock.now()
            rows = sum(outcome.result.row_counts.values())
            if not await self._finish(
                job,
                "done",
                result_path=final.name,
                checksum=checksum,
                size_bytes=size,
                k_achieved=outcome.k_anonymity.k_achieved,
                progress_rows=rows,
                progress_percent=100,
                expires_at=now + self._retention,
            ):
                final.unlink(missing_ok=True)
                if await self._cohort_narrowed(job):
                    raise CohortChanged("a clinic left the study while the export ran")
                raise LeaseLost("the export job was taken over by another instance")
            logger.info("export done", extra={"fields": {**fields, "rows": rows}})
        except ExportRefused as refusal:
            await self._finish(job, "refused", refusal_reason=refusal.detail[:500])
            logger.info("export refused", extra={"fields": fields})
        except CohortChanged:
            retry = job.attempts < MAX_ATTEMPTS
            await self._finish(
                job,
                "queued" if retry else "failed",
                **({} if retry else {"failure": "cohort_changed"}),
            )
            logger.warning("export cohort changed while running", extra={"fields": fields})
        except LeaseLost:
            logger.warning("export lease lost", extra={"fields": fields})
        except Exception as error:
            # The class name only: messages of unexpected errors may carry data.
            logger.exception("export failed", extra={"fields": fields})
            await self._finish(job, "failed", failure=type(error).__name__[:64])
        finally:
            await anyio.to_thread.run_sync(partial(shutil.rmtree, work, ignore_errors=True))

    async def cleanup(self) -> None:
        """The cleanup timer's job."""
        removed = await self.purge()
        if removed:
            logger.info("export archives deleted", extra={"fields": {"count": removed}})

    async def purge(self) -> int:
        """Expire old results and delete archives that will not be handed out again; returns
        how many were deleted."""
        removed = 0
        async with self._sessions() as session:
            connection = await session.connection()
            now = self._clock.now()
            await repository.expire_due(connection, now=now)
            for row in await repository.with_files_to_delete(
                connection, downloaded_before=now - DOWNLOAD_GRACE
            ):
                path = self._dir / Path(str(row.result_path)).name
                path.unlink(missing_ok=True)
                await repository.forget_file(connection, row.id)
                removed += 1
            await session.commit()
        return removed


def result_file(data_dir: Path, result_path: str) -> Path:
    """The archive of a finished job (`result_path` is a bare file name under the exports dir)."""
    return data_dir / EXPORTS_DIR / Path(result_path).name
