"""The response cache on Valkey (DESIGN §7): entries, generations, ETags, single flight.

An entry is the fully rendered JSON body of one read plus its ETag, stored under a key
made of the tenant, the type, the principal's fingerprint (identity and effective
scope: a role change makes old entries unreachable) and a canonical hash of the
request shape. Freshness comes from generation counters, not from deleting keys:

- every record has a generation `<p>:g:<tenant>:<type>:<id>`, every type one too;
- a write bumps the record's and the type's generation before AND after it commits;
- a reader fetches the entry and the generation it depends on in ONE `MGET`, and
  stores what it computed under the generation it read before touching the
  database — so an entry computed from state older than a write can never match the
  generation that write left behind, on any worker.

Single-resource entries depend on their record's generation; lists and
get-by-property on their type's. Lists also expire after `list_ttl` seconds, and no
entry outlives the principal's `valid_to`. With Valkey unreachable every call
degrades to a bypass: the caller computes from the database and nothing is served
from, or written to, the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from resolvers.principal import Principal
from resolvers.services import CACHE_ERRORS, Services

__all__ = ["CacheKey", "Cached", "ResponseCache", "request_shape_hash"]

_log = logging.getLogger("gateway.cache")

Status = Literal["HIT", "MISS", "BYPASS"]
_LOCK_TTL_MS = 5_000
_WAIT_STEP = 0.01
_WAIT_LIMIT = 2.0


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where one read's entry lives and which generation it depends on."""

    entry: str
    generation: str


@dataclass(frozen=True, slots=True)
class Cached:
    body: bytes
    etag: str
    status: Status


class _Entry(msgspec.Struct, array_like=True, frozen=True):
    generation: int
    etag: str
    body: bytes


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Entry)


def request_shape_hash(shape: object) -> str:
    """A canonical hash of a request shape (any msgspec-encodable value).

    Two requests that mean the same must pass equal shapes: the caller normalises
    (parsed filter tree without source positions, resolved order, paging, fields,
    display zone, multiple-value shape) before hashing.
    """
    return hashlib.sha256(msgspec.json.encode(shape, order="sorted")).hexdigest()[:32]


def etag_for(body: bytes, principal: Principal) -> str:
    """Scoped to the principal: the same body gives different ETags to different users."""
    digest = hashlib.sha256(principal.fingerprint.encode() + b"\0" + body).hexdigest()
    return f'"{digest[:32]}"'


class ResponseCache:
    """Read-through caching of rendered bodies, shared by every transport."""

    def __init__(self, services: Services, *, list_ttl: int = 300) -> None:
        self._services = services
        self._list_ttl = list_ttl
        self._tenant = services.tenant.digest[:12]
        self._inflight: dict[str, asyncio.Future[Cached]] = {}
        self.counters = {"HIT": 0, "MISS": 0, "BYPASS": 0}

    # --- keys ---------------------------------------------------------------------

    def _prefix(self) -> str:
        return f"{self._services.key_prefix}:{self._tenant}"

    def record_key(
        self, principal: Principal, type_name: str, record_id: int, shape: str
    ) -> CacheKey:
        base = self._prefix()
        return CacheKey(
            entry=f"{base}:e:{type_name}:r{record_id}:{principal.fingerprint}:{shape}",
            generation=f"{base}:g:{type_name}:{record_id}",
        )

    def type_key(self, principal: Principal, type_name: str, kind: str, shape: str) -> CacheKey:
        """Lists and get-by-property: they depend on the whole type."""
        base = self._prefix()
        return CacheKey(
            entry=f"{base}:e:{type_name}:{kind}:{principal.fingerprint}:{shape}",
            generation=f"{base}:g:{type_name}",
        )

    # --- reading ------------------------------------------------------------------

    async def read(
        self,
        principal: Principal,
        key: CacheKey,
        compute: Callable[[], Awaitable[bytes]],
        *,
        ttl: int | None = None,
    ) -> Cached:
        """The cached body for `key`, or `compute()` stored under the generation read first.

        Concurrent misses on one key compute once: in this process through a shared
        future, across processes through a short Valkey lock the others wait on.
        """
        try:
            raw, generation = await self._fetch(key)
        except CACHE_ERRORS:
            _log.warning("response cache unavailable; serving from the database")
            return await self._bypass(principal, compute)
        if (
            raw is not None
            and (entry := _decode(raw)) is not None
            and entry.generation == generation
        ):
            self.counters["HIT"] += 1
            return Cached(body=entry.body, etag=entry.etag, status="HIT")
        shared = self._inflight.get(key.entry)
        if shared is not None:
            result = await asyncio.shield(shared)
            return Cached(body=result.body, etag=result.etag, status="MISS")
        future: asyncio.Future[Cached] = asyncio.get_running_loop().create_future()
        self._inflight[key.entry] = future
        try:
            result = await self._fill(principal, key, generation, compute, ttl)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters re-raise it themselves
            raise
        else:
            future.set_result(result)
        finally:
            del self._inflight[key.entry]
        return result

    async def bypass(self, principal: Principal, compute: Callable[[], Awaitable[bytes]]) -> Cached:
        """Compute without the cache (no-cache, `_noCache=1`, audited reads)."""
        return await self._bypass(principal, compute)

    async def _bypass(
        self, principal: Principal, compute: Callable[[], Awaitable[bytes]]
    ) -> Cached:
        body = await compute()
        self.counters["BYPASS"] += 1
        return Cached(body=body, etag=etag_for(body, principal), status="BYPASS")

    async def _fetch(self, key: CacheKey) -> tuple[bytes | None, int]:
        raw, generation = await self._services.valkey.mget([key.entry, key.generation])
        return raw, int(generation or 0)

    async def _fill(
        self,
        principal: Principal,
        key: CacheKey,
        generation: int,
        compute: Callable[[], Awaitable[bytes]],
        ttl: int | None,
    ) -> Cached:
        valkey = self._services.valkey
        lock = f"{key.entry}:lock"
        try:
            owner = bool(await valkey.set(lock, b"1", nx=True, px=_LOCK_TTL_MS))
        except CACHE_ERRORS:
            return await self._bypass(principal, compute)
        if not owner:
            waited = await self._wait_for(key, generation)
            if waited is not None:
                self.counters["HIT"] += 1
                return waited
        body = await compute()
        etag = etag_for(body, principal)
        self.counters["MISS"] += 1
        expiry = self._expiry(principal, ttl)
        try:
            if expiry > 0:
                entry = _ENCODER.encode(_Entry(generation=generation, etag=etag, body=body))
                await valkey.set(key.entry, entry, ex=expiry)
            if owner:
                await valkey.delete(lock)
        except CACHE_ERRORS:
            _log.warning("response cache unavailable; entry not stored")
        return Cached(body=body, etag=etag, status="MISS")

    async def _wait_for(self, key: CacheKey, generation: int) -> Cached | None:
        """Another process computes this entry: wait for it, boundedly."""
        deadline = asyncio.get_running_loop().time() + _WAIT_LIMIT
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(_WAIT_STEP)
            try:
                raw, current = await self._fetch(key)
            except CACHE_ERRORS:
                return None
            if (
                raw is not None
                and (entry := _decode(raw)) is not None
                and entry.generation == current
            ):
                return Cached(body=entry.body, etag=entry.etag, status="HIT")
            if current != generation:
                return None  # a write happened meanwhile: compute fresh ourselves
        return None

    def _expiry(self, principal: Principal, ttl: int | None) -> int:
        """Seconds to keep an entry: the TTL, never past the principal's valid_to."""
        seconds = ttl if ttl is not None else self._list_ttl
        if principal.valid_to is not None:
            left = (principal.valid_to - self._services.clock()).total_seconds()
            seconds = min(seconds, int(left))
        return seconds

    # --- invalidation -------------------------------------------------------------

    async def written(self, type_name: str, record_id: int | None) -> None:
        """Bump the generations a write touches; call before and after it commits."""
        base = self._prefix()
        keys = [f"{base}:g:{type_name}"]
        if record_id is not None:
            keys.append(f"{base}:g:{type_name}:{record_id}")
        try:
            async with self._services.valkey.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.incr(key)
                await pipe.execute()
        except CACHE_ERRORS:
            # Entries cannot be served while Valkey is unreachable; if it comes back with
            # old entries, their generations no longer match once any later write bumps
            # them, and the TTL bounds them otherwise. Say so loudly.
            _log.exception("could not bump cache generations for %s %s", type_name, record_id)


def _decode(raw: bytes) -> _Entry | None:
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError:
        return None
