"""The response cache's hit/miss/bypass counters: counted in process, flushed to Valkey."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

from valkey.asyncio import Valkey

from resolvers.cache import ResponseCache


async def test_closing_waits_for_a_flush_that_is_writing(cache_url: str) -> None:
    """At shutdown the client is closed right after `aclose`: a flush still writing then
    failed on the closed connection, and its counts were lost."""
    valkey = Valkey.from_url(cache_url)
    cache = ResponseCache(
        valkey,
        prefix=f"counters-{secrets.token_hex(4)}",
        tenant_digest="0" * 64,
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    for status in ("HIT", "HIT", "MISS"):
        cache._count(status)  # what a read counts
    writing = asyncio.create_task(cache.flush_counters())
    await asyncio.sleep(0)
    assert cache._unflushed == {"HIT": 0, "MISS": 0, "BYPASS": 0}  # taken, being written
    await cache.aclose()
    assert writing.done()
    await valkey.aclose()
    assert writing.exception() is None
    reader = Valkey.from_url(cache_url)
    try:
        stats = await reader.hgetall(cache.stats_key())
    finally:
        await reader.aclose()
    assert (stats[b"HIT"], stats[b"MISS"]) == (b"2", b"1")
