"""The benchmark suite: ``bench/run`` imports every ``bench/bench_<suite>.py`` present, calls its
``run() -> list[dict]`` and prints one table per suite with the machine it ran on.

A suite module owns its method and its rows; a row is a flat dict (the first keys ``suite`` and
``name`` by convention). A suite that fails is reported as such and the others still run.
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

SUITES = ("submissions", "alerts", "check_ins", "exports", "notifications")
_HIDDEN = frozenset({"suite"})


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for package in ("litestar", "uvicorn", "sqlalchemy", "asyncpg", "aiosqlite", "msgspec"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    for package in ("uvloop", "httptools"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} absent")
    return {
        "cpu": f"{model}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "os": platform.platform(),
        "packages": ", ".join(versions),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns and key not in _HIDDEN)
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"some of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    chosen = args.suites or list(SUITES)
    info = machine()
    print("# Interlude benchmarks")
    for key, value in info.items():
        print(f"- {key}: {value}")
    everything: dict[str, Any] = {"machine": info, "suites": {}}
    failed = False
    for suite in chosen:
        name = f"bench.bench_{suite}"
        print(f"\n## {suite}\n", flush=True)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            print("(not present)")
            continue
        started = time.monotonic()
        try:
            rows = module.run()
        except Exception:
            failed = True
            traceback.print_exc()
            continue
        print(format_table(rows))
        print(f"\n({time.monotonic() - started:.0f} s)", flush=True)
        everything["suites"][suite] = rows
    if args.json is not None:
        args.json.write_text(json.dumps(everything, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
