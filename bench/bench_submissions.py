"""Submissions per second and p99 through the real endpoint, beside a bare Litestar endpoint.

The real path is ``POST /api/v1/responses`` on an ``interlude serve`` process: bearer-token
check, patient lookup, msgspec validation, scoring, AES-GCM encryption, the insert, the audit
row and the commit. The yardstick is a bare Litestar app that decodes the same body into the same
Struct and answers, served by the same uvicorn with the same options, measured in the same run.
Issue 5's target: real / bare >= 0.25 and p99 <= 50 ms at 64 connections, one worker process.

Method (as shared/ceilings.md): the server is pinned to CPU 0; wrk (-t1 -c64), and PostgreSQL (a
private cluster, so other people's tests do not share it) are pinned to CPU 1. Each configuration
gets a warm-up, then BENCH_RUNS runs of BENCH_SECONDS; the median of each column is reported.
Two replicas vs one: the replicas and the load share both cores (nothing pinned), each replica
gets half the connections; that is what this 2-vCPU machine can show, not a scaling law.
"""

import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.common import (
    Database,
    LoadResult,
    PrivateCluster,
    Process,
    bare_server,
    cpu_count,
    create_database,
    interlude_serve,
    make_world,
    phq9_body,
    run_wrk,
    service_env,
    workdir,
)

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP_SECONDS = float(os.environ.get("BENCH_WARMUP_SECONDS", "3"))
CONNECTIONS = 64
PATIENTS = int(os.environ.get("BENCH_PATIENTS", "64"))
TARGET_RATIO = 0.25
TARGET_P99_MS = 50.0
SUBMIT = "/api/v1/responses"
# Patients between sessions of an N2O course, as monitored patients are: the alert rules then
# read the course's sessions, baselines and check-ins too.
COURSE_SESSIONS = int(os.environ.get("BENCH_COURSE_SESSIONS", "2"))
IN_COURSE = f"real endpoint, 1 worker, in a course ({COURSE_SESSIONS} sessions)"


def _median(results: list[LoadResult]) -> dict[str, Any]:
    return {
        "rps": round(statistics.median(r.rps for r in results)),
        "p50_ms": round(statistics.median(r.p50_ms for r in results), 2),
        "p90_ms": round(statistics.median(r.p90_ms for r in results), 2),
        "p99_ms": round(statistics.median(r.p99_ms for r in results), 2),
        "runs_rps": " / ".join(str(round(r.rps)) for r in results),
        "non_2xx": sum(r.non_2xx for r in results),
        "errors": sum(r.errors for r in results),
    }


def _check_endpoint(base_url: str, headers: dict[str, str]) -> None:
    """The configuration answers a good body with 200 and refuses a bad answer value."""
    good = httpx.post(base_url + SUBMIT, json=phq9_body(), headers=headers, timeout=10)
    if good.status_code != 200:
        msg = f"{base_url}: good submission got {good.status_code}"
        raise RuntimeError(msg)
    bad_body = phq9_body(unexpectedField=1)  # refused by the Struct itself (unknown field)
    bad = httpx.post(base_url + SUBMIT, json=bad_body, headers=headers, timeout=10)
    if bad.status_code not in (400, 422):
        msg = f"{base_url}: invalid submission got {bad.status_code}"
        raise RuntimeError(msg)


def _measure(
    servers: list[Process], authorization: list[str] | None, *, pin_load: bool
) -> dict[str, Any]:
    body = msgspec.json.encode(phq9_body())
    headers = {"Authorization": authorization[0]} if authorization else {}
    for server in servers:
        _check_endpoint(server.base_url, headers)

    def one(seconds: float) -> LoadResult:
        if len(servers) == 1:
            return run_wrk(
                servers[0].base_url + SUBMIT,
                body,
                authorization=authorization,
                connections=CONNECTIONS,
                seconds=seconds,
                cpus="1" if pin_load else None,
            )
        return _run_wrk_split(servers, body, authorization, seconds)

    one(WARMUP_SECONDS)
    cpu_before = sum(s.cpu_seconds() for s in servers)
    wall_before = time.monotonic()
    results = [one(SECONDS) for _ in range(RUNS)]
    cpu = sum(s.cpu_seconds() for s in servers) - cpu_before
    row = _median(results)
    row["app_cpu_pct"] = round(100 * cpu / (time.monotonic() - wall_before))
    return row


def _run_wrk_split(
    servers: list[Process], body: bytes, authorization: list[str] | None, seconds: float
) -> LoadResult:
    """One wrk per replica at the same time, connections split; sums throughput, keeps the worst
    percentiles (an upper bound for the combined distribution)."""
    from concurrent.futures import ThreadPoolExecutor

    share = CONNECTIONS // len(servers)
    with ThreadPoolExecutor(len(servers)) as pool:
        parts = list(
            pool.map(
                lambda s: run_wrk(
                    s.base_url + SUBMIT,
                    body,
                    authorization=authorization,
                    connections=share,
                    seconds=seconds,
                    cpus=None,
                ),
                servers,
            )
        )
    return LoadResult(
        requests=sum(p.requests for p in parts),
        seconds=max(p.seconds for p in parts),
        rps=sum(p.rps for p in parts),
        p50_ms=max(p.p50_ms for p in parts),
        p90_ms=max(p.p90_ms for p in parts),
        p99_ms=max(p.p99_ms for p in parts),
        max_ms=max(p.max_ms for p in parts),
        non_2xx=sum(p.non_2xx for p in parts),
        errors=sum(p.errors for p in parts),
        generator="wrk x2",
    )


def _real(
    database: Database,
    tmp: Path,
    *,
    replicas: int = 1,
    pinned_server: bool = True,
    sessions: int = 0,
) -> dict[str, Any]:
    data_dir = tmp / f"var-{database.kind}"
    servers = [
        interlude_serve(
            database.url,
            data_dir,
            log=tmp / f"serve-{database.kind}-{replicas}-{n}.log",
            cpus="0" if pinned_server and replicas == 1 else None,
            instance_id=f"bench-{n}",
        )
        for n in range(replicas)
    ]
    try:
        for server in servers:
            server.start()
        # Many patients, as in a clinic: each one's history stays short, as it would in life
        # (the alert rules read a patient's history on every submission).
        world = make_world(
            servers[0].base_url,
            service_env(database.url, data_dir),
            patients=PATIENTS,
            sessions=sessions,
        )
        authorization = [patient.headers["Authorization"] for patient in world.patients]
        return _measure(servers, authorization, pin_load=pinned_server and replicas == 1)
    finally:
        for server in servers:
            server.terminate()


def _row(name: str, database: str, measured: dict[str, Any], bare_rps: float) -> dict[str, Any]:
    ratio = measured["rps"] / bare_rps if bare_rps else float("nan")
    return {
        "suite": "submissions",
        "name": name,
        "database": database,
        **measured,
        "ratio_to_bare": round(ratio, 3),
        "target": f"ratio >= {TARGET_RATIO}, p99 <= {TARGET_P99_MS:.0f} ms",
        "meets_target": ratio >= TARGET_RATIO and measured["p99_ms"] <= TARGET_P99_MS,
    }


def run() -> list[dict[str, Any]]:
    if cpu_count() < 2:
        print("bench: fewer than 2 CPUs; nothing is pinned")
    rows: list[dict[str, Any]] = []
    with workdir() as tmp:
        bare = bare_server(log=tmp / "bare.log", cpus="0").start()
        try:
            bare_measured = _measure([bare], None, pin_load=True)
        finally:
            bare.terminate()
        bare_rps = float(bare_measured["rps"])
        rows.append(
            {
                "suite": "submissions",
                "name": "bare Litestar (decode + validate only)",
                "database": "-",
                **bare_measured,
                "ratio_to_bare": 1.0,
            }
        )

        sqlite = create_database("sqlite", tmp / "sqlite")
        rows.append(_row("real endpoint, 1 worker", "sqlite", _real(sqlite, tmp), bare_rps))
        in_course = _real(sqlite, tmp, sessions=COURSE_SESSIONS)
        rows.append(_row(IN_COURSE, "sqlite", in_course, bare_rps))

        cluster = PrivateCluster(cpus="1").init()
        cluster.start()
        try:
            postgres = create_database("postgresql", tmp / "pgdb", cluster.admin_url)
            one = _real(postgres, tmp)
            rows.append(_row("real endpoint, 1 worker", "postgresql", one, bare_rps))
            in_course = _real(postgres, tmp, sessions=COURSE_SESSIONS)
            rows.append(_row(IN_COURSE, "postgresql", in_course, bare_rps))
            single = _real(postgres, tmp, replicas=1, pinned_server=False)
            rows.append(_row("1 replica, unpinned", "postgresql", single, bare_rps))
            double = _real(postgres, tmp, replicas=2, pinned_server=False)
            row = _row("2 replicas, unpinned", "postgresql", double, bare_rps)
            row["vs_1_replica"] = round(double["rps"] / single["rps"], 2) if single["rps"] else None
            rows.append(row)
        finally:
            cluster.destroy()
    return rows


if __name__ == "__main__":
    for line in run():
        print(line)
