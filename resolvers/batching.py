"""Coalesced Valkey reads: every GET issued in one event-loop turn travels in one MGET.

Under concurrency the per-command cost of the client, not Valkey, bounds throughput:
one round trip for all keys read in a turn costs about as much as one GET. A read
still sees Valkey's state at the moment the MGET runs; nothing is kept in-process.
"""

from __future__ import annotations

import asyncio

from valkey.asyncio import Valkey

__all__ = ["BatchedReads"]

_MAX_BATCH = 512


class BatchedReads:
    def __init__(self, valkey: Valkey) -> None:
        self._valkey = valkey
        self._pending: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> bytes | None:
        """The value of `key`, read together with the other keys asked for this turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((key, future))
        return await future

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            task = asyncio.ensure_future(self._read(batch))
            self._tasks.add(task)  # keep a reference until done
            task.add_done_callback(self._tasks.discard)

    async def _read(self, batch: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        try:
            values = await self._valkey.mget([key for key, _ in batch])
        except BaseException as exc:  # every waiter gets the failure, as its own GET would
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)
