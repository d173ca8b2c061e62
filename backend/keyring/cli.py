"""``interlude keys status | rotate-kek | rotate-deks``: see and rotate the keys.

Rotation with the development/production key file: ``rotate-kek`` adds a new active key to the file
and re-wraps every data key under it (running app instances reload the file when they meet the new
key id). With ``INTERLUDE_KEK``: put the new key first (active) and keep the old one after it, roll
it out to every instance, then run ``rotate-kek``. Either way, once ``status`` lists an old KEK as
removable, remove it.

``rotate-deks`` gives every owner a new data key and re-encrypts their fields online
(``backend.keyring.dek_rotation``); old versions are destroyed after a grace period, so run it
again with ``--resume`` a few minutes later to finish.
"""

import argparse
import asyncio
import sys
import time
from typing import Any

from backend.config import Settings
from backend.crypto import CryptoError, KekProvider, add_key_to_file
from backend.db.engine import create_engine
from backend.keyring.dek_rotation import (
    DEFAULT_BATCH_SIZE as DEFAULT_DEK_BATCH_SIZE,
)
from backend.keyring.dek_rotation import (
    DEFAULT_GRACE_PERIOD,
    DekRotationProgress,
    NoRotationToResumeError,
    RotationInProgressError,
    dek_rotation_status,
    rotate_data_keys,
)
from backend.keyring.encrypted_columns import UnclassifiedColumnsError
from backend.keyring.rotation import (
    DEFAULT_BATCH_SIZE,
    KeyStatus,
    RewrapProgress,
    key_status,
    rewrap_data_keys,
)
from backend.keyring.service import Keyring
from backend.system.keys import load_kek

EXIT_PROBLEM = 1


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    keys = subparsers.add_parser("keys", help="key-encryption keys and data keys")
    actions = keys.add_subparsers(dest="keys_action", required=True)
    status = actions.add_parser(
        "status", help="KEK ids, data keys per KEK and per state; exit 1 if a KEK is missing"
    )
    status.set_defaults(handler=_status)
    rotate = actions.add_parser(
        "rotate-kek",
        help="add a new active KEK (key file) and re-wrap every data key under it",
    )
    rotate.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted rotation: re-wrap only, add no new key",
    )
    rotate.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"data keys per transaction (default {DEFAULT_BATCH_SIZE})",
    )
    rotate.set_defaults(handler=_rotate_kek)
    grace_minutes = int(DEFAULT_GRACE_PERIOD.total_seconds() // 60)
    deks = actions.add_parser(
        "rotate-deks",
        help="give every owner a new data key and re-encrypt their fields (online, resumable)",
        description=(
            "Data-key rotation while the service runs: every owner (patient, staff member, export)"
            " gets a new data key that new writes use at once; every field under an older key is"
            " re-encrypted in short transactions that never overwrite a concurrent change; an old"
            f" key is destroyed once nothing uses it and it was retired over {grace_minutes}"
            " minutes ago. Progress shows here and in `interlude keys status`. Interrupted, or"
            " with old keys still in their grace period: run again with --resume."
        ),
    )
    deks.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished rotation (after an interruption, or to destroy old keys"
        " once their grace period is over)",
    )
    deks.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_DEK_BATCH_SIZE,
        help=f"rows per transaction (default {DEFAULT_DEK_BATCH_SIZE})",
    )
    deks.set_defaults(handler=_rotate_deks)


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201


def describe(status: KeyStatus) -> list[str]:
    lines = [
        f"active KEK: {status.active_kek} (loaded: {', '.join(status.loaded_keks)})",
        f"data keys: {status.active} active, {status.retired} retired,"
        f" {status.destroyed} destroyed",
    ]
    for kid in sorted(set(status.live_keys_by_kek) | set(status.loaded_keks)):
        count = status.live_keys_by_kek.get(kid, 0)
        note = ""
        if kid in status.missing_keks:
            note = "  NOT LOADED: these data keys cannot be unwrapped"
        elif kid == status.active_kek:
            note = "  (active)"
        elif count:
            note = "  (old: run `interlude keys rotate-kek --resume`)"
        else:
            note = "  (wraps nothing: can be removed)"
        lines.append(f"  KEK {kid}: {count} live data keys{note}")
    return lines


def describe_dek_rotation(progress: DekRotationProgress | None) -> list[str]:
    if progress is None:
        return ["data-key rotation: never run"]
    state = (
        f"finished {progress.finished_at.isoformat()}"
        if progress.finished_at is not None
        else "NOT FINISHED: run `interlude keys rotate-deks --resume`"
    )
    lines = [
        f"data-key rotation started {progress.started_at.isoformat()}: {state}",
        f"  owners done: {progress.owners_done}/{progress.owners_total};"
        f" rows re-encrypted: {progress.rows_reencrypted};"
        f" old key versions destroyed: {progress.versions_destroyed},"
        f" waiting: {progress.versions_waiting}",
    ]
    if progress.rows_unreadable:
        lines.append(
            f"  {progress.rows_unreadable} fields could not be decrypted (tampered, or their key"
            " version is gone) and were left as they are; the log has their table, column and"
            " row id (alert decryption-failed)"
        )
    return lines


async def _with_engine_status(
    settings: Settings, kek: KekProvider
) -> tuple[KeyStatus, DekRotationProgress | None]:
    engine = create_engine(settings)
    try:
        return await key_status(engine, kek), await dek_rotation_status(engine)
    finally:
        await engine.dispose()


def _status(settings: Settings, _args: argparse.Namespace) -> int:
    status, deks = asyncio.run(_with_engine_status(settings, load_kek(settings)))
    for line in describe(status) + describe_dek_rotation(deks):
        _say(line)
    return EXIT_PROBLEM if status.missing_keks else 0


def _rotate_deks(settings: Settings, args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("interlude: --batch-size must be at least 1", file=sys.stderr)  # noqa: T201
        return 2
    kek = load_kek(settings)
    keyring = Keyring(kek, kek_loader=lambda: load_kek(settings))
    last_report = [float("-inf")]

    def progress(step: DekRotationProgress) -> None:
        # One line a second at most: a clinic has thousands of owners.
        now = time.monotonic()
        if now - last_report[0] >= 1.0:
            last_report[0] = now
            _say(
                f"owners {step.owners_done}/{step.owners_total} done,"
                f" {step.rows_reencrypted} rows re-encrypted"
            )

    async def run() -> DekRotationProgress:
        engine = create_engine(settings)
        try:
            return await rotate_data_keys(
                engine,
                keyring,
                resume=args.resume,
                batch_size=args.batch_size,
                on_progress=progress,
            )
        finally:
            await engine.dispose()

    _say("rotating data keys; if interrupted, run `interlude keys rotate-deks --resume`")
    try:
        done = asyncio.run(run())
    except (RotationInProgressError, NoRotationToResumeError, UnclassifiedColumnsError) as error:
        print(f"interlude: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        # Every step committed on its own; nothing is half-done.
        print(  # noqa: T201
            "interlude: interrupted; run `interlude keys rotate-deks --resume` to continue",
            file=sys.stderr,
        )
        return 130
    for line in describe_dek_rotation(done):
        _say(line)
    if done.finished_at is not None:
        _say("done: every owner has a new data key and no old key version is left")
        return 0
    if done.versions_waiting and done.owners_done == done.owners_total:
        minutes = int(DEFAULT_GRACE_PERIOD.total_seconds() // 60)
        _say(
            f"re-encryption done; {done.versions_waiting} old key versions are kept for"
            f" {minutes} minutes after retirement (requests in flight may still use them):"
            " run `interlude keys rotate-deks --resume` after that to destroy them"
        )
        return 0
    return EXIT_PROBLEM


def _rotate_kek(settings: Settings, args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("interlude: --batch-size must be at least 1", file=sys.stderr)  # noqa: T201
        return 2
    if settings.kek is None and not args.resume:
        load_kek(settings)  # the file must be readable before we add to it
        kid = add_key_to_file(settings.kek_file)
        _say(f"added KEK {kid} to {settings.kek_file} and made it active")
    kek = load_kek(settings)
    if settings.kek is not None:
        _say(f"using INTERLUDE_KEK; its first key, {kek.active_kid}, is the active KEK")

    def progress(step: RewrapProgress) -> None:
        _say(f"re-wrapped {step.rewrapped} data keys, {step.remaining} to go")

    async def run() -> tuple[int, KeyStatus]:
        engine = create_engine(settings)
        try:
            done = await rewrap_data_keys(
                engine, kek, batch_size=args.batch_size, on_progress=progress
            )
            return done, await key_status(engine, kek)
        finally:
            await engine.dispose()

    _say(f"re-wrapping data keys under KEK {kek.active_kid}; if interrupted, run with --resume")
    try:
        done, status = asyncio.run(run())
    except CryptoError as error:
        # e.g. a data key wrapped by a KEK that is not loaded; the batches before it are kept.
        print(f"interlude: key rotation stopped: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_PROBLEM
    _say(f"done: {done} data keys re-wrapped under KEK {kek.active_kid}")
    if status.removable_keks:
        _say(
            "no live data key uses KEK "
            + ", ".join(status.removable_keks)
            + " any more: remove it once backups made before now have expired"
        )
    return 0
