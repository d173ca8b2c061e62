"""The ``interlude`` command: serve, migrate, config.

Configuration and key errors print one line naming the setting and exit with status 2.
"""

import argparse
import json
import sys
from collections.abc import Sequence

from backend.audit import cli as audit_cli
from backend.config import ConfigError, Settings, load_settings
from backend.domain.demo import cli as demo_cli
from backend.domain.exports import cli as exports_cli
from backend.identity import cli as identity_cli
from backend.keyring import cli as keys_cli
from backend.lib.logging import configure_logging
from backend.system.single_instance import AnotherInstanceRunning

EXIT_CONFIG = 2


def _fail(message: str) -> int:
    print(f"interlude: {message}", file=sys.stderr)  # noqa: T201
    return EXIT_CONFIG


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from backend.db import migrate
    from backend.keyring.secrets import load_service_secrets
    from backend.system.keys import load_kek
    from backend.system.notifications import load_notifications_config
    from backend.system.single_instance import InstanceLock

    # Check what can be checked before anything starts, so a problem is one clear line.
    load_notifications_config(settings)
    load_kek(settings)
    load_service_secrets(settings)
    if settings.sqlite_path is not None:
        probe = InstanceLock(settings.sqlite_path)
        probe.acquire()
        probe.release()
    if settings.auto_migrate:
        migrate.upgrade(settings)
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    uvicorn.run(
        "backend.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=20,
        env_file=None,
    )
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from backend.db import migrate

    if args.action == "up":
        migrate.upgrade(settings, args.revision or "head")
    elif args.action == "down":
        migrate.downgrade(settings, args.revision or "-1")
    elif args.action == "revision":
        if not args.message:
            return _fail("migrate revision needs -m MESSAGE")
        migrate.autogenerate(settings, args.message)
        return 0
    current = migrate.current_revision(settings)
    head = migrate.head_revision()
    state = "at head" if current == head else f"head is {head}"
    print(f"current revision: {current or 'none (empty database)'} ({state})")  # noqa: T201
    return 0


def _config(settings: Settings, _args: argparse.Namespace) -> int:
    print(json.dumps(settings.masked(), indent=2))  # noqa: T201
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interlude", description="Between-session monitoring service."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service and its timers")
    serve.add_argument("--host", help="address to bind (default INTERLUDE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default INTERLUDE_PORT or 8000)")
    serve.set_defaults(handler=_serve)
    mig = commands.add_parser("migrate", help="apply or undo schema migrations")
    mig.add_argument("action", choices=["up", "down", "current", "revision"])
    mig.add_argument("revision", nargs="?", help="target revision (up: head, down: -1)")
    mig.add_argument("-m", "--message", help="message for a new revision")
    mig.set_defaults(handler=_migrate)
    cfg = commands.add_parser("config", help="print the effective configuration, secrets masked")
    cfg.set_defaults(handler=_config)
    audit_cli.register(commands)
    demo_cli.register(commands)
    identity_cli.register(commands)
    keys_cli.register(commands)
    exports_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        return _fail(f"configuration error: {error}")
    configure_logging(settings.log_level, settings.log_format)
    try:
        return int(args.handler(settings, args))
    except ConfigError as error:
        return _fail(f"configuration error: {error}")
    except AnotherInstanceRunning as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    except OSError as error:
        # e.g. the data directory is not writable, or the port is taken
        return _fail(f"{type(error).__name__}: {error.strerror or error}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
