"""Coalesced Valkey reads: every read issued in one event-loop turn travels in one MGET.

Under concurrency the per-command cost of the client, not Valkey, bounds throughput:
one round trip for all keys read in a turn costs about as much as one GET. A read
still sees Valkey's state at the moment the MGET runs; nothing is kept in-process.

On a single server the keys of one `get_many` are read by the same MGET, so they are
read atomically, as one MGET of their own would be. On a cluster an MGET must stay
within one hash slot: the turn's keys are split by slot into one MGET per slot, sent
as one pipeline per node (`mget_nonatomic`), so a turn still costs one round trip per
node. Keys of one slot (one hash tag) are then read atomically, keys of different
slots each at its own instant; `resolvers.cache` explains why its reads need no more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from valkey.asyncio import Valkey
from valkey.asyncio.cluster import ValkeyCluster

__all__ = ["BatchedReads", "ValkeyClient"]

ValkeyClient = Valkey | ValkeyCluster
"""A single server's client or a cluster's (`GATEWAY_VALKEY_CLUSTER`)."""

_MAX_BATCH = 512
"""Requests per MGET (a cached read asks for a few keys, a key check for one)."""

_Wanted = tuple[Sequence[str], "asyncio.Future[list[bytes | None]]"]


class BatchedReads:
    def __init__(self, valkey: ValkeyClient) -> None:
        # Chosen once: the single server's path stays one plain MGET per turn.
        self._mget = valkey.mget_nonatomic if isinstance(valkey, ValkeyCluster) else valkey.mget
        self._pending: list[_Wanted] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> bytes | None:
        """The value of `key`, read together with the other keys asked for this turn."""
        (value,) = await self.get_many((key,))
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys`, read with this turn's other reads (atomically per slot)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bytes | None]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((keys, future))
        return await future

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            task = asyncio.ensure_future(self._read(batch))
            self._tasks.add(task)  # keep a reference until done
            task.add_done_callback(self._tasks.discard)

    async def _read(self, batch: list[_Wanted]) -> None:
        try:
            values = await self._mget([key for keys, _ in batch for key in keys])
        except BaseException as exc:  # every waiter gets the failure, as its own GET would
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for keys, future in batch:
            if not future.done():
                future.set_result(values[start : start + len(keys)])
            start += len(keys)
