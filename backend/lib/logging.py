"""Structured logs: one JSON object per line, with the request id when there is one.

Log lines carry ids, route templates, status codes and durations. They never carry request bodies,
query strings, names, contact details, answers or scores (PHI): callers pass only such safe fields
as ``extra={"fields": {...}}``.
"""

import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import msgspec

request_id_var: ContextVar[str | None] = ContextVar("interlude_request_id", default=None)

_json = msgspec.json.Encoder()


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def format_exception_without_messages(exc_info: ExcInfo) -> str:
    """Traceback frames and exception *types* only.

    Exception messages can quote data (a driver echoing a value, a decoder quoting input), so
    they are left out: where the failure happened is enough to start debugging, and no PHI leaks.
    Our own errors whose messages are written to be safe say so with ``message_is_safe_to_log``.
    """
    lines: list[str] = []
    error: BaseException | None = exc_info[1]
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        lines.extend(traceback.format_tb(error.__traceback__))
        name = f"{type(error).__module__}.{type(error).__qualname__}"
        if getattr(error, "message_is_safe_to_log", False):
            lines.append(f"{name}: {error}\n")
        else:
            lines.append(f"{name} (message withheld)\n")
        error = error.__cause__ or error.__context__
        if error is not None:
            lines.append("-- while handling / caused by --\n")
    return "".join(lines).rstrip()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and traceback only: SQL parameters are hidden at the engine.
            entry["exception"] = format_exception_without_messages(record.exc_info)
        return _json.encode(entry).decode()


class TextFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:  # noqa: N802  (logging's name)
        return format_exception_without_messages(ei)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        request_id = request_id_var.get()
        return f"{line} request_id={request_id}" if request_id else line


def configure_logging(level: str, fmt: str) -> None:
    """Send every logger (ours, uvicorn's, SQLAlchemy's, APScheduler's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log prints raw paths and query strings; we log route templates ourselves.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("apscheduler", "aiosqlite", "asyncio", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
