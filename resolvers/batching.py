"""Coalesced Valkey reads: every read issued in one event-loop turn travels in one MGET.

Under concurrency the per-command cost of the client, not Valkey, bounds throughput:
one round trip for all keys read in a turn costs about as much as one GET. A read
still sees Valkey's state at the moment the MGET runs; nothing is kept in-process.
The keys of one `get_many` are read by the same MGET, so they are read atomically,
as one MGET of their own would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from valkey.asyncio import Valkey

__all__ = ["BatchedReads"]

_MAX_BATCH = 512
"""Requests per MGET (a cached read asks for a few keys, a key check for one)."""

_Wanted = tuple[Sequence[str], "asyncio.Future[list[bytes | None]]"]


class BatchedReads:
    def __init__(self, valkey: Valkey) -> None:
        self._valkey = valkey
        self._pending: list[_Wanted] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> bytes | None:
        """The value of `key`, read together with the other keys asked for this turn."""
        (value,) = await self.get_many((key,))
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys`, read atomically, in one MGET with this turn's other reads."""
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
            values = await self._valkey.mget([key for keys, _ in batch for key in keys])
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
