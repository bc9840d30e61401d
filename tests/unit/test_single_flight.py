"""`resolvers.memo.SingleFlight`: one call per key at a time, shared by those who ask
meanwhile; its error reaches all of them; a cancelled caller's call is taken over."""

from __future__ import annotations

import asyncio

import pytest

from resolvers.memo import SingleFlight


async def test_callers_of_one_key_share_one_call() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def call() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    tasks = [asyncio.create_task(flights.run("k", call)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert sorted(results) == [(42, False)] + [(42, True)] * 4
    assert len(flights) == 0


async def test_an_error_reaches_every_caller() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def call() -> int:
        await release.wait()
        raise ValueError("no")

    tasks = [asyncio.create_task(flights.run("k", call)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)


async def test_a_cancelled_caller_is_taken_over_by_a_waiter() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def call() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    first = asyncio.create_task(flights.run("k", call))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(flights.run("k", call)) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()
    for _ in range(3):  # the cancellation reaches the waiters; one of them calls again
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters)
    assert calls == 2
    assert sorted(results) == [(2, False), (2, True), (2, True)]
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(flights) == 0
