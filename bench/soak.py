"""Soak: a steady rate of submissions (and metric scrapes) against one ``interlude serve`` for
10 minutes; passes with no errors and flat memory.

    .venv/bin/python -m bench.soak [--database postgresql|sqlite] [--seconds 600] [--rate 50]

Open loop: request n is due at start + n / rate whatever the previous ones did, so a stall shows
up as latency rather than as a lower rate. The server's RSS is sampled every 10 s; "flat" means
the last minute's median is within 10 % (and 20 MiB) of the median of the minute after warm-up
(the first 60 s are warm-up: caches, connection pools, the allocator settling). Access tokens
are refreshed every 5 minutes the way the app does. The RSS slope after warm-up (least squares,
MiB per minute) is printed beside the verdict. Exit status 0 only if every check passes.
"""

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import httpx

from bench.common import (
    PrivateCluster,
    create_database,
    interlude_serve,
    make_world,
    percentile,
    phq9_body,
    refresh_patient,
    service_env,
    workdir,
)

SAMPLE_SECONDS = 10.0
WARMUP_SECONDS = 60.0
# Access tokens live 15 minutes; refreshing every 5 exercises the app's rotation in a 10-minute run.
REFRESH_SECONDS = 300.0


async def _drive(
    base_url: str, server_rss: Any, world: Any, seconds: float, rate: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    rss: list[tuple[float, int]] = []
    patients = world.patients
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    # Scrapes get their own connection: a backlog of submissions must not starve them (nor crash
    # the run: a failed scrape is counted as an error like a failed submission).
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client,
        httpx.AsyncClient(base_url=base_url, timeout=10) as scraper,
    ):
        start = time.monotonic()
        in_flight: set[asyncio.Task[None]] = set()

        async def submit(number: int) -> None:
            nonlocal errors
            patient = patients[number % len(patients)]
            began = time.perf_counter()
            try:
                response = await client.post(
                    "/api/v1/responses", json=phq9_body(), headers=patient.headers
                )
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.perf_counter() - began)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        number = 0
        next_sample = start
        next_refresh = start + REFRESH_SECONDS
        while (now := time.monotonic()) < start + seconds:
            if now >= next_sample:
                rss.append((now - start, server_rss()))
                try:
                    scrape = await scraper.get("/metrics")
                except httpx.HTTPError:
                    errors += 1
                else:
                    statuses[scrape.status_code] = statuses.get(scrape.status_code, 0) + 1
                next_sample += SAMPLE_SECONDS
            if now >= next_refresh:
                for patient in patients:
                    try:
                        await refresh_patient(scraper, patient)
                    except httpx.HTTPError:
                        errors += 1
                next_refresh += REFRESH_SECONDS
            due = start + number / rate
            if due > now:
                await asyncio.sleep(min(due - now, 0.05))
                continue
            task = asyncio.create_task(submit(number))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            number += 1
        await asyncio.gather(*in_flight)
        dead = _dead_letters((await scraper.get("/metrics")).text)
    latencies.sort()
    return {
        "sent": number,
        "statuses": statuses,
        "errors": errors,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "rss": rss,
        "dead_letters": dead,
    }


def _dead_letters(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("interlude_outbox_dead_letters "):
            return float(line.split()[1])
    return float("nan")


def _memory_verdict(rss: list[tuple[float, int]], seconds: float) -> tuple[bool, float, float]:
    early = [kib for t, kib in rss if WARMUP_SECONDS <= t < WARMUP_SECONDS + 60]
    late = [kib for t, kib in rss if t >= seconds - 60]
    if not early or not late:
        return True, float("nan"), float("nan")
    before, after = statistics.median(early) / 1024, statistics.median(late) / 1024
    return after <= max(before * 1.10, before + 20), before, after


def _slope_mib_per_minute(rss: list[tuple[float, int]]) -> float:
    points = [(t / 60, kib / 1024) for t, kib in rss if t >= WARMUP_SECONDS]
    if len(points) < 2:
        return float("nan")
    return statistics.linear_regression([t for t, _ in points], [m for _, m in points]).slope


def soak(database: str, seconds: float, rate: float) -> int:
    with workdir("interlude-soak-") as tmp:
        cluster = None
        if database == "postgresql":
            cluster = PrivateCluster()
            cluster.init().start()
        try:
            if cluster is not None:
                db = create_database("postgresql", tmp / "db", cluster.admin_url)
            else:
                db = create_database("sqlite", tmp / "db")
            data_dir = tmp / "var"
            server = interlude_serve(db.url, data_dir, log=tmp / "serve.log").start()
            try:
                world = make_world(server.base_url, service_env(db.url, data_dir), patients=20)
                result = asyncio.run(_drive(server.base_url, server.rss_kib, world, seconds, rate))
            finally:
                server.terminate()
                log = server.tail(2000)
        finally:
            if cluster is not None:
                cluster.destroy()
    flat, before, after = _memory_verdict(result["rss"], seconds)
    slope = _slope_mib_per_minute(result["rss"])
    non_2xx = sum(n for status, n in result["statuses"].items() if not 200 <= status < 300)
    print(f"soak: {database}, {seconds:.0f} s at {rate:g} submissions/s")
    print("| t (s) | server RSS (MiB) |\n|---:|---:|")
    for t, kib in result["rss"]:
        print(f"| {t:.0f} | {kib / 1024:.1f} |")
    print(
        f"\nsent {result['sent']}, statuses {result['statuses']}, transport errors "
        f"{result['errors']}, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"max {result['max_ms']:.1f} ms; RSS {before:.1f} MiB after warm-up -> {after:.1f} MiB "
        f"at the end ({'flat' if flat else 'GROWING'}), slope after warm-up {slope:+.2f} MiB/min; "
        f"dead letters {result['dead_letters']:g}"
    )
    ok = flat and non_2xx == 0 and result["errors"] == 0 and result["dead_letters"] == 0
    if not ok:
        print(f"soak FAILED; server log tail:\n{log}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=50.0, help="submissions per second")
    args = parser.parse_args(argv)
    return soak(args.database, args.seconds, args.rate)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
