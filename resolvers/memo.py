"""`Lru`: a bounded table of things computed once and kept while in use; `SingleFlight`:
calls in flight, shared by whoever asks for the same key meanwhile.

`Lru` is for pure results only — parsed documents, plans, compiled statements — never
for anything that could go stale: freshness is decided elsewhere, on every request.
A `SingleFlight` keeps nothing once a call is done.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Lru", "SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most `size` entries, the least recently used out first (one event loop: no locks).

    Given `weigh`, `size` bounds the sum of the entries' weights instead of their count
    (bytes, say, for values whose sizes differ by orders of magnitude).
    """

    def __init__(self, size: int, *, weigh: Callable[[V], int] | None = None) -> None:
        self._size = size
        self._weigh = weigh
        self._weight = 0
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        weigh = self._weigh
        if weigh is None:
            self._items[key] = value
            self._items.move_to_end(key)
            if len(self._items) > self._size:
                self._items.popitem(last=False)
            return value
        weight = weigh(value)
        if weight > self._size:
            return value  # it would push out everything else: not kept
        replaced = self._items.pop(key, None)
        if replaced is not None:
            self._weight -= weigh(replaced)
        self._items[key] = value
        self._weight += weight
        while self._weight > self._size:
            _, oldest = self._items.popitem(last=False)
            self._weight -= weigh(oldest)
        return value

    @property
    def weight(self) -> int:
        """The sum of the entries' weights (their count without `weigh`)."""
        return self._weight if self._weigh is not None else len(self._items)

    def __len__(self) -> int:
        return len(self._items)


class SingleFlight(Generic[K, V]):
    """One call per key at a time: whoever asks for a key while its call runs waits for
    that call's outcome (its value or its error) instead of making another.

    The caller that makes the call is cancelled (its client went away, the server is
    stopping)? The first waiter to wake makes it again for the others, none of which is
    cancelled with it.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """`call()`'s value, or that of the call already running for `key`; and whether
        it was shared (True) or made here."""
        while (shared := self._running.get(key)) is not None:
            try:
                return await asyncio.shield(shared), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # this caller is the one cancelled
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await call()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters re-raise it themselves
            raise
        else:
            future.set_result(value)
        finally:
            del self._running[key]
        return value, False

    def __len__(self) -> int:
        return len(self._running)
