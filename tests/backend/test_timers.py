"""Timers run on a real AsyncIOScheduler; their health is what /readyz reports."""

import asyncio

from backend.timers import Timers


async def _wait_until(predicate: "object", seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_a_timer_runs_at_start_and_then_on_its_interval() -> None:
    timers = Timers()
    runs: list[float] = []

    async def job() -> None:
        runs.append(asyncio.get_running_loop().time())

    timers.every("tick", 0.1, job)
    assert timers.health() == {"tick": "starting"}
    timers.start()
    try:
        await _wait_until(lambda: len(runs) >= 3)
        assert timers.health() == {"tick": "ok"}
        assert timers.running
    finally:
        await timers.shutdown()
    assert not timers.running


async def test_a_failing_timer_is_reported_and_keeps_being_retried() -> None:
    timers = Timers()
    attempts = 0

    async def job() -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("database down")

    timers.every("claim", 0.05, job)
    timers.start()
    try:
        await _wait_until(lambda: attempts >= 3)
        assert timers.health() == {"claim": "failing"}
    finally:
        await timers.shutdown()


async def test_a_timer_recovers_after_failures() -> None:
    timers = Timers()
    attempts = 0

    async def job() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise RuntimeError("transient")

    timers.every("claim", 0.05, job)
    timers.start()
    try:
        await _wait_until(lambda: attempts >= 5)
        assert timers.health() == {"claim": "ok"}
    finally:
        await timers.shutdown()


async def test_shutdown_lets_a_run_in_progress_finish() -> None:
    timers = Timers()
    started = asyncio.Event()
    finished: list[bool] = []

    async def job() -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.append(True)

    timers.every("claim", 60, job)
    timers.start()
    await asyncio.wait_for(started.wait(), 5)
    await timers.shutdown()
    assert finished == [True]
    assert not timers.running
