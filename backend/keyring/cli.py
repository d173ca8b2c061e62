"""``interlude keys status | rotate-kek``: see and rotate the key-encryption keys.

Rotation with the development/production key file: ``rotate-kek`` adds a new active key to the file
and re-wraps every data key under it (running app instances reload the file when they meet the new
key id). With ``INTERLUDE_KEK``: put the new key first (active) and keep the old one after it, roll
it out to every instance, then run ``rotate-kek``. Either way, once ``status`` lists an old KEK as
removable, remove it.
"""

import argparse
import asyncio
import sys
from typing import Any

from backend.config import Settings
from backend.crypto import CryptoError, KekProvider, add_key_to_file
from backend.db.engine import create_engine
from backend.keyring.rotation import (
    DEFAULT_BATCH_SIZE,
    KeyStatus,
    RewrapProgress,
    key_status,
    rewrap_data_keys,
)
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


async def _with_engine_status(settings: Settings, kek: KekProvider) -> KeyStatus:
    engine = create_engine(settings)
    try:
        return await key_status(engine, kek)
    finally:
        await engine.dispose()


def _status(settings: Settings, _args: argparse.Namespace) -> int:
    status = asyncio.run(_with_engine_status(settings, load_kek(settings)))
    for line in describe(status):
        _say(line)
    return EXIT_PROBLEM if status.missing_keks else 0


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
