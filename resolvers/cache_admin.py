"""Operating the response cache: what it holds, how well it does, and purging it.

Shared by `/admin/cache`, the `/manage` screen and `gateway cache stats|purge`. The
HTTP callers need `manageCache`; the CLI runs as the operator of the machine.
Counting walks the tenant's entry keys with `SCAN` (never `KEYS`), bounded by
`SCAN_LIMIT` keys so that a huge cache cannot stall the server; the figures say when
they were cut short. On a cluster valkey-py's `scan_iter` walks every primary and the
pipelines and `UNLINK`s are split by node, so stats and purges cover the whole cluster.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from resolvers.cache import CACHE_ERRORS
from resolvers.errors import FieldError, Invalid
from resolvers.principal import Principal
from resolvers.services import Services
from resolvers.tenant import Permission

__all__ = ["CacheStats", "TypeStats", "cache_stats", "purge_cache"]

SCAN_LIMIT = 200_000
_BATCH = 500
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class TypeStats:
    entries: int = 0
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class CacheStats:
    available: bool
    """False when Valkey could not be reached: every read is then a BYPASS."""
    list_ttl: int
    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    since: str | None = None
    """When the shared counters started (the first count after Valkey lost them)."""
    types: dict[str, TypeStats] = field(default_factory=dict)
    truncated: bool = False
    """More than `SCAN_LIMIT` keys: the entry figures count only the first ones."""

    @property
    def hit_ratio(self) -> float | None:
        served = self.hits + self.misses + self.bypasses
        return None if served == 0 else self.hits / served

    @property
    def entries(self) -> int:
        return sum(t.entries for t in self.types.values())

    @property
    def memory_bytes(self) -> int:
        return sum(t.memory_bytes for t in self.types.values())


async def cache_stats(services: Services, principal: Principal | None) -> CacheStats:
    """Entries and memory per type, and hits/misses/bypasses of every process.

    `principal` None is the CLI (the machine's operator).
    """
    if principal is not None:
        principal.require(Permission.MANAGE_CACHE)
    cache = services.cache
    try:
        await cache.flush_counters()
        # valkey-py types hash commands for both clients; this one is asyncio.
        stored: dict[bytes, bytes] = await services.valkey.hgetall(cache.stats_key())  # type: ignore[misc]
        counters = {k.decode(): v.decode() for k, v in stored.items()}
        per_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        scanned = 0
        truncated = False
        batch: list[bytes] = []
        async for key in services.valkey.scan_iter(match=cache.entry_pattern(), count=_BATCH):
            if key.endswith(b":lock"):
                continue
            scanned += 1
            if scanned > SCAN_LIMIT:
                truncated = True
                break
            batch.append(key)
            if len(batch) >= _BATCH:
                await _measure(services, batch, per_type)
                batch = []
        await _measure(services, batch, per_type)
    except CACHE_ERRORS:
        return CacheStats(available=False, list_ttl=cache.list_ttl)
    return CacheStats(
        available=True,
        list_ttl=cache.list_ttl,
        hits=int(counters.get("HIT", 0)),
        misses=int(counters.get("MISS", 0)),
        bypasses=int(counters.get("BYPASS", 0)),
        since=counters.get("since"),
        types={
            name: TypeStats(entries=count, memory_bytes=memory)
            for name, (count, memory) in sorted(per_type.items())
        },
        truncated=truncated,
    )


async def _measure(services: Services, keys: list[bytes], per_type: dict[str, list[int]]) -> None:
    """Add the entry count and `MEMORY USAGE` of `keys` to their types, one pipeline."""
    if not keys:
        return
    async with services.valkey.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key)
        sizes = await pipe.execute()
    for key, size in zip(keys, sizes, strict=True):
        if size is None:
            continue  # expired between SCAN and MEMORY USAGE
        type_name = services.cache.entry_type(key)
        per_type[type_name][0] += 1
        per_type[type_name][1] += int(size)


async def purge_cache(
    services: Services,
    principal: Principal | None,
    *,
    type_name: str | None = None,
    user_id: int | None = None,
) -> int:
    """Delete the entries of one type, one user, both, or all; the number deleted.

    Purging never makes anything stale: the next read recomputes. `principal` None is
    the CLI. With Valkey unreachable this raises (the caller says so): nothing is
    cached then anyway, but the operator asked for something that did not happen.
    """
    if principal is not None:
        principal.require(Permission.MANAGE_CACHE)
    errors = []
    if type_name is not None:
        type_def = services.tenant.types.get(type_name)
        if type_def is None or not type_def.api:  # `api = false` types are never named outside
            errors.append(FieldError("type", f"no type named {type_name!r}"))
    if user_id is not None and not 1 <= user_id <= _MAX_ID:
        errors.append(FieldError("user", "a positive user id"))
    if errors:
        raise Invalid("the purge is not valid", errors)
    pattern = services.cache.entry_pattern(type_name, user_id)
    deleted = 0
    batch: list[bytes] = []
    async for key in services.valkey.scan_iter(match=pattern, count=_BATCH):
        batch.append(key)
        if len(batch) >= _BATCH:
            deleted += await services.valkey.unlink(*batch)
            batch = []
    if batch:
        deleted += await services.valkey.unlink(*batch)
    return deleted
