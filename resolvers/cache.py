"""The response cache on Valkey (DESIGN §7): entries, generations, ETags, single flight.

An entry is the fully rendered JSON body of one read plus its ETag, stored under a key
made of the tenant, the type, the principal's fingerprint (identity and effective
scope: a role change makes old entries unreachable) and a canonical hash of the
request shape. Freshness comes from generation counters, not from deleting keys:

- every record has a generation `{<p>:<tenant>:<type>}:g:<id>`, every type one too
  (`{...}:g`), and every type one for changes its records undergo without being
  written themselves (`{...}:g:rows`: a referenced record was deleted);
- a write bumps the generations it touches before AND after it commits;
- every entry also depends on the tenant's epoch (`<p>:<tenant>:g`), which a process
  bumps on its first successful call after Valkey failed it: writes made meanwhile
  bumped nothing, and a Valkey that comes back with its data (an append-only file, a
  snapshot) would otherwise hold entries that match their generations yet predate
  those writes;
- a reader fetches the entry and every generation it depends on in one batched read
  (`BatchedReads`), and stores what it computed under the generations it read before
  touching the database — so an entry computed from state older than a write can
  never match the generations that write left behind, on any worker.

Which generations an entry depends on is the caller's choice (`resolvers.reads`):
single-resource entries on their record's, lists and get-by-property on their type's
and on those of the types their filters and scopes can reach. Entries expire after
`list_ttl` seconds at most, and none outlives the principal's `valid_to`. With
Valkey unreachable every call degrades to a bypass: the caller computes from the
database and nothing is served from, or written to, the cache.

Entry keys read `{<p>:<tenant>:<type>}:e:<what>:u<user id>:<fingerprint>:<shape>`, so
operators can count and purge them by type or by user with a `SCAN` pattern.

Valkey clusters. Everything of one type — its entries, their single-flight locks
(`<entry>:lock`) and its generations — carries the hash tag `{<p>:<tenant>:<type>}`:
one slot, so one node, per type, and a tenant's types spread over the cluster. A
tenant-wide tag would be simpler and make every read one atomic MGET, but would put
the whole cache on one node. The epoch and the shared counters (`<p>:<tenant>:stats`)
have slots of their own. No operation needs two keys to change or be read together:

- a lock is one `SET NX PX`, an entry one `SET`, a bump one `INCR` (a write's bumps
  travel in one non-transactional pipeline, split by node on a cluster);
- a read depends on the epoch and often on other types, so on a cluster its keys span
  slots and are read one MGET per slot, each at its own instant, not as one snapshot.
  The protocol needs none. Generations only grow, and a write's second bump follows
  its commit, so once the write has returned, any read of one of its generations sees
  a value higher than any read of it before the commit. An entry matches only when
  it was stored under exactly the values read now; so for each completed write that
  bumped one of its generations, whoever computed it read that generation after the
  write committed, and read the database after that. Each generation vouches for itself.
  Reading them at different instants can only turn a hit into a miss (an entry
  stored in between), never serve an entry older than a completed write.

Reads go to primaries only (valkey-py's default): a replica may lag behind a bump. A
failover that loses acknowledged bumps (replication is asynchronous) can make older
entries current again until they expire — like a restart from an old snapshot that no
process saw fail; the epoch covers only the failures a process sees.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import msgspec
from valkey.exceptions import ValkeyError

from resolvers.batching import BatchedReads, ValkeyClient
from resolvers.key_leases import announce
from resolvers.memo import SingleFlight
from resolvers.principal import Principal

__all__ = [
    "CACHE_ERRORS",
    "CacheKey",
    "Cached",
    "ResponseCache",
    "Status",
    "etag_for",
    "request_shape_hash",
]

CACHE_ERRORS = (ValkeyError, OSError, TimeoutError)
"""What a Valkey call raises when the server is down, slow or unreachable."""

_log = logging.getLogger("gateway.cache")

Status = Literal["HIT", "MISS", "BYPASS"]
_LOCK_TTL_MS = 5_000
_WAIT_STEP = 0.01
_WAIT_LIMIT = 2.0
_FLUSH_DELAY = 1.0


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where one read's entry lives and which generation it depends on."""

    entry: str
    generations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cached:
    body: bytes
    etag: str
    status: Status


class _Entry(msgspec.Struct, array_like=True, frozen=True):
    generations: tuple[int, ...]
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
    """Read-through caching of rendered bodies, shared by every transport.

    One per process (it holds the in-process single-flight table and the counters);
    everything else lives in Valkey, so any number of processes share the entries.
    """

    def __init__(
        self,
        valkey: ValkeyClient,
        *,
        reads: BatchedReads | None = None,
        prefix: str,
        tenant_digest: str,
        clock: Callable[[], dt.datetime],
        list_ttl: int = 300,
    ) -> None:
        self._valkey = valkey
        self._reads = reads or BatchedReads(valkey)
        self._clock = clock
        self.list_ttl = list_ttl
        self.prefix = f"{prefix}:{tenant_digest[:12]}"
        self._key_prefix = prefix
        self._failures = 0
        """Valkey calls that failed since the epoch was last bumped (see `_recover`)."""
        self._inflight: SingleFlight[str, Cached] = SingleFlight()
        self.counters: dict[Status, int] = {"HIT": 0, "MISS": 0, "BYPASS": 0}
        self._unflushed: dict[Status, int] = {"HIT": 0, "MISS": 0, "BYPASS": 0}
        self._flushing: asyncio.Task[None] | None = None
        """The flush waiting to run (None once it runs: later counts start another)."""
        self._writing = asyncio.Lock()
        """Held by a flush while it writes: `aclose` waits for it before Valkey closes."""

    # --- keys ---------------------------------------------------------------------

    def tag(self, type_name: str) -> str:
        """The hash tag of every key of one type: one slot, so one node of a cluster."""
        return f"{{{self.prefix}:{type_name}}}"

    def generation(self, type_name: str, what: int | str | None = None) -> str:
        """A generation key: the type's, a record's (`what` = id) or `rows`."""
        base = f"{self.tag(type_name)}:g"
        return base if what is None else f"{base}:{what}"

    def epoch(self) -> str:
        """The generation every entry depends on, bumped after Valkey was unreachable."""
        return f"{self.prefix}:g"

    def entry_pattern(self, type_name: str | None = None, user_id: int | None = None) -> str:
        """A `SCAN` pattern for the entries of one type, one user, or all."""
        type_part = "*" if type_name is None else _glob_escape(type_name)
        user_part = "*" if user_id is None else f"*:u{user_id}:*"
        return f"{{{_glob_escape(self.prefix)}:{type_part}}}:e:{user_part}"

    def entry_type(self, key: bytes) -> str:
        """The type an entry key (as `SCAN` returns it) belongs to."""
        start = len(self.prefix) + 2  # past "{<prefix>:"
        return key[start : key.index(b"}", start)].decode()

    def record_key(
        self,
        principal: Principal,
        type_name: str,
        record_id: int,
        shape: str,
        *,
        depends: Iterable[str] = (),
    ) -> CacheKey:
        """One record: its own generation, rows changed around it, and `depends` types."""
        return CacheKey(
            entry=self._entry(principal, type_name, f"r{record_id}", shape),
            generations=(
                self.epoch(),
                self.generation(type_name, record_id),
                self.generation(type_name, "rows"),
                *(self.generation(t) for t in depends),
            ),
        )

    def type_key(
        self,
        principal: Principal,
        type_name: str,
        kind: str,
        shape: str,
        *,
        depends: Iterable[str] = (),
    ) -> CacheKey:
        """Lists and get-by-property: they depend on the whole type (and on `depends`)."""
        return CacheKey(
            entry=self._entry(principal, type_name, kind, shape),
            generations=(
                self.epoch(),
                self.generation(type_name),
                *(self.generation(t) for t in depends if t != type_name),
            ),
        )

    def _entry(self, principal: Principal, type_name: str, what: str, shape: str) -> str:
        who = f"u{principal.user_id}:{principal.fingerprint}"
        return f"{self.tag(type_name)}:e:{what}:{who}:{shape}"

    # --- reading ------------------------------------------------------------------

    async def read(
        self,
        principal: Principal,
        key: CacheKey,
        compute: Callable[[], Awaitable[bytes]],
        *,
        ttl: int | None = None,
    ) -> Cached:
        """The cached body for `key`, or `compute()` stored under the generations read first.

        Concurrent misses on one key compute once: in this process through a shared
        future, across processes through a short Valkey lock the others wait on.
        """
        try:
            if self._failures:
                await self._recover()
            raw, generations = await self._fetch(key)
        except CACHE_ERRORS:
            self._failures += 1
            _log.warning("response cache unavailable; serving from the database")
            return await self._bypass(principal, compute)
        if (hit := _current(raw, generations)) is not None:
            self._count("HIT")
            return hit
        result, shared = await self._inflight.run(
            key.entry, lambda: self._fill(principal, key, generations, compute, ttl)
        )
        if not shared:
            return result
        self._count("HIT")
        return Cached(body=result.body, etag=result.etag, status="HIT")

    async def bypass(self, principal: Principal, compute: Callable[[], Awaitable[bytes]]) -> Cached:
        """Compute without the cache (no-cache, `_noCache=1`, audited reads)."""
        return await self._bypass(principal, compute)

    async def _bypass(
        self, principal: Principal, compute: Callable[[], Awaitable[bytes]]
    ) -> Cached:
        body = await compute()
        self._count("BYPASS")
        return Cached(body=body, etag=etag_for(body, principal), status="BYPASS")

    async def _fetch(self, key: CacheKey) -> tuple[bytes | None, tuple[int, ...]]:
        raw, *generations = await self._reads.get_many([key.entry, *key.generations])
        return raw, tuple(int(g or 0) for g in generations)

    async def _fill(
        self,
        principal: Principal,
        key: CacheKey,
        generations: tuple[int, ...],
        compute: Callable[[], Awaitable[bytes]],
        ttl: int | None,
    ) -> Cached:
        lock = f"{key.entry}:lock"
        try:
            owner = bool(await self._valkey.set(lock, b"1", nx=True, px=_LOCK_TTL_MS))
        except CACHE_ERRORS:
            self._failures += 1
            return await self._bypass(principal, compute)
        if not owner:
            waited = await self._wait_for(key, generations)
            if waited is not None:
                self._count("HIT")
                return waited
        try:
            body = await compute()
        except BaseException:
            if owner:  # a failed read (404, 422) leaves nothing to wait for
                await self._release(lock)
            raise
        etag = etag_for(body, principal)
        self._count("MISS")
        expiry = self._expiry(principal, ttl)
        try:
            if expiry > 0:
                entry = _ENCODER.encode(_Entry(generations=generations, etag=etag, body=body))
                await self._valkey.set(key.entry, entry, ex=expiry)
            if owner:
                await self._valkey.delete(lock)
        except CACHE_ERRORS:
            self._failures += 1
            _log.warning("response cache unavailable; entry not stored")
        return Cached(body=body, etag=etag, status="MISS")

    async def _release(self, lock: str) -> None:
        try:
            await self._valkey.delete(lock)
        except CACHE_ERRORS:
            self._failures += 1  # the lock expires by itself

    async def _wait_for(self, key: CacheKey, generations: tuple[int, ...]) -> Cached | None:
        """Another process computes this entry: wait for it, boundedly."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _WAIT_LIMIT
        while loop.time() < deadline:
            await asyncio.sleep(_WAIT_STEP)
            try:
                raw, current = await self._fetch(key)
            except CACHE_ERRORS:
                self._failures += 1
                return None
            if (hit := _current(raw, current)) is not None:
                return hit
            if current != generations:
                return None  # a write happened meanwhile: compute fresh ourselves
        return None

    def _expiry(self, principal: Principal, ttl: int | None) -> int:
        """Seconds to keep an entry: the TTL, never past the principal's valid_to."""
        seconds = ttl if ttl is not None else self.list_ttl
        if principal.valid_to is not None:
            left = (principal.valid_to - self._clock()).total_seconds()
            seconds = min(seconds, int(left))
        return seconds

    # --- invalidation -------------------------------------------------------------

    async def written(
        self,
        type_name: str,
        record_id: int | None,
        *,
        affected: Iterable[str] = (),
    ) -> None:
        """Bump the generations a write touches; call before and after it commits.

        `affected` names the types whose records a write changes without writing them
        (a delete nulls or drops references to the deleted record).
        """
        keys = [self.generation(type_name)]
        if record_id is not None:
            keys.append(self.generation(type_name, record_id))
        for other in affected:
            keys += [self.generation(other), self.generation(other, "rows")]
        try:
            if self._failures:
                await self._recover()
            async with self._valkey.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.incr(key)
                await pipe.execute()
        except CACHE_ERRORS:
            # Nothing is served from the cache while this process cannot reach Valkey, and
            # its first successful call afterwards bumps the epoch (`_recover`).
            self._failures += 1
            _log.exception("could not bump cache generations for %s %s", type_name, record_id)

    def note_failure(self) -> None:
        """A Valkey call made elsewhere (an API-key snapshot's eviction) failed: this
        process's next successful call bumps the epoch, as after a failed cache call."""
        self._failures += 1

    async def recover(self) -> None:
        """Bump the epoch if calls failed since it was last bumped (raises while Valkey
        is still unreachable)."""
        if self._failures:
            await self._recover()

    async def _recover(self) -> None:
        """After failed calls, bump the epoch (raising if Valkey is still unreachable).

        Writes made while Valkey was unreachable bumped no generation, and a Valkey that
        comes back with its data holds entries that predate them: the epoch makes every
        entry stale at once, for every process, before this one reads or writes again.
        """
        failures = self._failures
        await self._valkey.incr(self.epoch())
        # Key snapshots carry the epoch too: those kept in memory go at once.
        await announce(self._valkey, self._key_prefix, None)
        self._failures -= failures  # failures counted meanwhile call for another bump
        _log.warning("response cache reachable again; every entry made stale")

    # --- counters -----------------------------------------------------------------

    def stats_key(self) -> str:
        return f"{self.prefix}:stats"

    def _count(self, status: Status) -> None:
        """Count in process; the shared counters in Valkey get it within a second."""
        self.counters[status] += 1
        self._unflushed[status] += 1
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(_FLUSH_DELAY)
        self._flushing = None
        await self.flush_counters()

    async def flush_counters(self) -> None:
        """Add this process's counts since the last flush to the shared hash."""
        async with self._writing:
            pending = {k: v for k, v in self._unflushed.items() if v}
            if not pending:
                return
            for name in pending:
                self._unflushed[name] = 0
            try:
                async with self._valkey.pipeline(transaction=False) as pipe:
                    for name, count in pending.items():
                        pipe.hincrby(self.stats_key(), name, count)
                    pipe.hsetnx(self.stats_key(), "since", self._clock().isoformat())
                    await pipe.execute()
            except CACHE_ERRORS:
                for name, count in pending.items():
                    self._unflushed[name] += count  # kept for the next flush

    async def aclose(self) -> None:
        """Flush what is counted (best effort) and stop the pending flush; a flush that
        is writing is waited for (the client is closed next: it would fail mid-write)."""
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        await self.flush_counters()


def _current(raw: bytes | None, generations: tuple[int, ...]) -> Cached | None:
    """The entry as a hit, when it was stored under exactly these generations."""
    if raw is None or (entry := _decode(raw)) is None or entry.generations != generations:
        return None
    return Cached(body=entry.body, etag=entry.etag, status="HIT")


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _decode(raw: bytes) -> _Entry | None:
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError:
        return None
