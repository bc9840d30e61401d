"""Coalesced Valkey reads against a real Valkey: one MGET per turn, failures to every waiter."""

from __future__ import annotations

import asyncio
import socket

import pytest
from valkey.asyncio import Valkey
from valkey.exceptions import ConnectionError as ValkeyConnectionError

from resolvers.batching import BatchedReads


async def _mget_calls(client: Valkey) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def test_reads_in_one_turn_share_one_mget(cache_url: str) -> None:
    client = Valkey.from_url(cache_url)
    try:
        await client.mset({f"k{i}": f"v{i}" for i in range(100)})
        reads = BatchedReads(client)
        before = await _mget_calls(client)
        values = await asyncio.gather(*(reads.get(f"k{i}") for i in range(100)), reads.get("nope"))
        after = await _mget_calls(client)
    finally:
        await client.aclose()
    assert values == [f"v{i}".encode() for i in range(100)] + [None]
    assert after - before == 1


async def test_sequential_reads_each_see_the_current_value(cache_url: str) -> None:
    client = Valkey.from_url(cache_url)
    try:
        reads = BatchedReads(client)
        await client.set("k", "one")
        assert await reads.get("k") == b"one"
        await client.set("k", "two")
        assert await reads.get("k") == b"two"
    finally:
        await client.aclose()


async def test_a_failed_read_fails_every_waiter() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Valkey.from_url(f"valkey://127.0.0.1:{port}", socket_connect_timeout=0.5)
    try:
        reads = BatchedReads(client)
        results = await asyncio.gather(reads.get("a"), reads.get("b"), return_exceptions=True)
    finally:
        await client.aclose()
    assert all(isinstance(r, ValkeyConnectionError | OSError) for r in results), results


async def test_a_cancelled_waiter_does_not_disturb_the_others(cache_url: str) -> None:
    client = Valkey.from_url(cache_url)
    try:
        await client.set("k", "v")
        reads = BatchedReads(client)
        doomed = asyncio.ensure_future(reads.get("k"))
        kept = asyncio.ensure_future(reads.get("k"))
        await asyncio.sleep(0)
        doomed.cancel()
        assert await kept == b"v"
        with pytest.raises(asyncio.CancelledError):
            await doomed
    finally:
        await client.aclose()
