"""Key snapshots kept in process memory under a lease, so that a key check does no I/O.

A revocation must apply on the very next request, on every worker. Memory alone cannot
promise that; a lease renewed through Valkey can:

- Each process holds one pub/sub connection subscribed to `<prefix>:auth:evict`. Every
  `RENEW_EVERY` seconds it registers itself in `<prefix>:auth:holders` (a hash field
  that Valkey expires after twice the lease), then sends `PING <token>` on that
  connection. Valkey answers a connection in order, so the pong proves that every
  eviction published before Valkey ran the PING has already been handled: the lease
  then runs until the PING's send time plus `LEASE`.
- Memory is used only while the lease runs (`KeyLeases.get`). A dropped or re-made
  subscription, an error, or a changed cache epoch empties it; a stalled process simply
  lets its lease run out, and its requests read Valkey as they did without leases.
- An eviction (`announce`) follows its tombstones with a `PUBLISH`, then waits until
  every registered holder has acknowledged it (`RPUSH` of its name, after dropping the
  entries), and as many acknowledgements have come as `PUBLISH` counted subscribers;
  or until the lease of a holder that did not answer has run out: `LEASE` plus a
  margin after the publish returned. A holder registered after the publish either
  handled the message before its next pong, or subscribed after it and so started
  empty.
- A snapshot read from Valkey or the database enters memory only if no eviction was
  handled since the request began (`mark`, `offer`): a read that raced an eviction
  cannot put the old snapshot back after the eviction was handled.

Time-based checks (expiry, validity window) still run on every request. In cluster mode
a `PUBLISH` is relayed between nodes with no order relative to a subscriber's PING, so
the gateway holds no leases there (`gateway.runtime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from valkey.asyncio import Valkey
from valkey.exceptions import ValkeyError

from resolvers.batching import ValkeyClient

__all__ = ["LEASE", "RENEW_EVERY", "KeyLeases", "announce"]

_log = logging.getLogger("gateway.auth")

LEASE = 1.0
"""Seconds memory may be trusted after a PING whose pong arrived, counted from its send."""
RENEW_EVERY = 0.25
"""Seconds between two renewals: a lease survives three lost or late pongs."""
_MARGIN = 0.1
"""Added to `LEASE` by an eviction waiting on a holder that did not acknowledge."""
_HOLDER_TTL_MS = int(2 * LEASE * 1000)
"""A holder's registration outlives any lease it grants itself (see `_renew`)."""
_ACK_TTL = 10
_LIMIT = 10_000
"""Keys kept in memory at most; memory is emptied when full."""
_ERRORS = (ValkeyError, OSError, TimeoutError)

T = TypeVar("T")


def _channel(prefix: str) -> str:
    return f"{prefix}:auth:evict"


def _holders(prefix: str) -> str:
    return f"{prefix}:auth:holders"


def _acks(prefix: str, nonce: str) -> str:
    return f"{prefix}:auth:ack:{nonce}"


class KeyLeases(Generic[T]):
    """One process's key snapshots (by public id), usable while its lease runs."""

    def __init__(
        self,
        valkey: Valkey,
        prefix: str,
        *,
        epoch_key: str,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        self._valkey = valkey
        self._observe = observe
        """Told `held` when a lease begins after none, `lost` when one held is lost."""
        self._prefix = prefix
        self._epoch_key = epoch_key
        self._clock = clock
        self.name = secrets.token_hex(8)
        """This process's name among the holders."""
        self._entries: dict[str, T] = {}
        self._until = 0.0
        self._evictions = 0
        self._epoch: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._pongs = 0
        self._stopping = False

    # --- the request side ---------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether memory may be used now."""
        return self._clock() < self._until

    def get(self, public_id: str) -> T | None:
        """The snapshot kept for `public_id`, or None (none kept, or no lease now)."""
        if self._clock() < self._until:
            return self._entries.get(public_id)
        return None

    def mark(self) -> int:
        """Taken before a request reads the snapshot elsewhere; given back to `offer`."""
        return self._evictions

    def offer(self, public_id: str, snapshot: T, mark: int) -> None:
        """Keep a snapshot read since `mark`, unless an eviction was handled meanwhile."""
        if mark != self._evictions or self._clock() >= self._until:
            return
        if len(self._entries) >= _LIMIT:
            self._entries.clear()
        self._entries[public_id] = snapshot

    def _drop(self, public_ids: Sequence[str] | None = None) -> None:
        self._evictions += 1
        if public_ids is None:
            self._entries.clear()
        else:
            for public_id in public_ids:
                self._entries.pop(public_id, None)

    def _lapse(self) -> None:
        if self.held and not self._stopping and self._observe is not None:
            self._observe("lost")
        self._until = 0.0
        self._drop()

    # --- the holder ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._hold(), name="key-leases")

    async def aclose(self) -> None:
        """Stop holding; unregister so that evictions stop waiting for this process."""
        self._stopping = True  # valkey-py can swallow a cancellation mid-read
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._lapse()
        with contextlib.suppress(*_ERRORS):
            await _command(self._valkey, "HDEL", _holders(self._prefix), self.name)

    async def _hold(self) -> None:
        failures = 0
        while not self._stopping:
            pongs = self._pongs
            try:
                await self._subscribed()
            except _ERRORS as exc:
                failures = 0 if self._pongs != pongs else failures + 1
                if failures <= 1:
                    _log.warning("key leases lost (%s); key checks read Valkey meanwhile", exc)
            except Exception:  # noqa: BLE001 - a bug must not end leases silently forever
                failures += 1
                _log.exception("key leases failed; key checks read Valkey meanwhile")
            finally:
                self._lapse()
            await asyncio.sleep(min(0.1 * failures, 2.0))

    async def _subscribed(self) -> None:
        pubsub = self._valkey.pubsub()
        try:
            await pubsub.subscribe(_channel(self._prefix))
            pings: dict[bytes, float] = {}
            renew_at = 0.0
            while not self._stopping:
                if self._clock() >= renew_at:
                    renew_at = self._clock() + RENEW_EVERY
                    await self._renew(pubsub, pings)
                message = await pubsub.get_message(timeout=max(0.0, renew_at - self._clock()))
                if message is not None:
                    await self._handle(message, pings)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _renew(self, pubsub: Any, pings: dict[bytes, float]) -> None:
        sent = self._clock()
        async with self._valkey.pipeline(transaction=False) as pipe:
            pipe.execute_command(
                "HSETEX", _holders(self._prefix), "PX", _HOLDER_TTL_MS, "FIELDS", 1, self.name, 1
            )
            pipe.get(self._epoch_key)
            _, epoch = await pipe.execute()
        if epoch != self._epoch:  # the cache was unreachable for some process
            self._epoch = epoch
            self._drop()
        pinged = self._clock()
        if pinged - sent > LEASE / 2:
            # The registration expires twice LEASE after Valkey ran it: a lease from this
            # PING (ending at `pinged` + LEASE) must end before it does.
            return
        token = secrets.token_hex(4).encode()
        for stale in [t for t, at in pings.items() if at < pinged - 10 * LEASE]:
            del pings[stale]
        pings[token] = pinged
        await pubsub.ping(token)

    async def _handle(self, message: dict[str, Any], pings: dict[bytes, float]) -> None:
        kind = message["type"]
        if kind == "pong":
            pinged = pings.pop(message["data"], None)
            if pinged is not None:
                if not self.held and self._observe is not None:
                    self._observe("held")
                self._until = max(self._until, pinged + LEASE)
                self._pongs += 1
        elif kind == "message":
            parts = bytes(message["data"]).decode("ascii", "replace").split()
            public_ids = parts[1:]
            if not public_ids or public_ids == ["*"]:
                self._drop()  # anything unexpected drops everything
            else:
                self._drop(public_ids)
            if not parts:
                return
            nonce = parts[0]
            async with self._valkey.pipeline(transaction=False) as pipe:
                pipe.rpush(_acks(self._prefix, nonce), self.name)
                pipe.expire(_acks(self._prefix, nonce), _ACK_TTL)
                await pipe.execute()
        elif kind == "subscribe":
            # A first subscription, or valkey-py's re-subscription after a reconnect:
            # evictions published while disconnected were lost.
            self._lapse()


async def announce(
    valkey: ValkeyClient,
    prefix: str,
    public_ids: Sequence[str] | None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Tell every holder to drop these keys' snapshots (None: all), and return once each
    has, or once the lease of any that did not has run out. Call after the tombstones."""
    if not isinstance(valkey, Valkey):
        return  # a cluster: no process holds leases (see the module's docstring)
    nonce = secrets.token_hex(8)
    payload = " ".join([nonce, *(public_ids if public_ids is not None else ["*"])])
    try:
        async with valkey.pipeline(transaction=False) as pipe:
            pipe.publish(_channel(prefix), payload)
            pipe.hkeys(_holders(prefix))  # after the publish: see the module's docstring
            subscribers, holders = await pipe.execute()
        deadline = clock() + LEASE + _MARGIN
        # Every registered holder, and as many acknowledgements as there were
        # subscribers: the registry alone would miss a holder whose registration was
        # lost (a flushed or evicted key) while its subscription was not.
        waiting, acknowledged = set(holders), 0
        while waiting or acknowledged < subscribers:
            remaining = deadline - clock()
            if remaining <= 0:
                break
            popped = await _command(valkey, "BLPOP", _acks(prefix, nonce), f"{remaining:.3f}")
            if popped is None:
                break
            waiting.discard(popped[1])
            acknowledged += 1
        if waiting or acknowledged < subscribers:
            _log.warning(
                "eviction not acknowledged by every holder (%d of %d subscribers, %d "
                "registered holders silent); their leases ran out",
                acknowledged,
                subscribers,
                len(waiting),
            )
        await _command(valkey, "DEL", _acks(prefix, nonce))
    except _ERRORS:
        # Holders that cannot reach Valkey either lose their lease within LEASE: wait it.
        _log.exception("could not announce an eviction; waiting for leases to run out")
        await asyncio.sleep(LEASE + _MARGIN)


async def _command(valkey: Valkey, *args: str | float) -> Any:
    """One command, through a pipeline: valkey-py types a client's own `execute_command`
    (and its blocking commands' float timeouts) poorly."""
    async with valkey.pipeline(transaction=False) as pipe:
        pipe.execute_command(*args)
        (result,) = await pipe.execute()
    return result
