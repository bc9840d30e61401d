"""`/api/v1/admin`: the response cache (manageCache) and the read audit (manageUsers)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from litestar import Controller, delete, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from resolvers import audit, cache_admin
from resolvers.errors import Unavailable
from resolvers.services import CACHE_ERRORS, Services
from resolvers.storage import MAX_ID
from rest.openapi import problems
from rest.v1.security import caller

__all__ = ["AdminController", "CacheStatsView", "TypeCacheView", "cache_stats_view"]

_Id = Annotated[int | None, QueryParameter(gt=0, le=MAX_ID)]


class TypeCacheView(msgspec.Struct):
    entries: int
    memory_bytes: int


class CacheStatsView(msgspec.Struct):
    """The response cache across every process sharing this Valkey."""

    available: bool
    """False: Valkey is unreachable and every read is served from the database."""
    list_ttl: int
    entries: int
    memory_bytes: int
    hits: int
    misses: int
    bypasses: int
    hit_ratio: float | None
    """Hits over all reads counted (null before the first)."""
    since: str | None
    """When these counters started."""
    truncated: bool
    """The entry figures stop after the first 200,000 keys."""
    types: dict[str, TypeCacheView]


class PurgeResult(msgspec.Struct):
    deleted: int
    type: str | None
    user: int | None


class AuditEntryView(msgspec.Struct):
    id: int
    occurred_on: dt.datetime
    user_id: int | None
    type: str
    record_id: int | None
    action: str
    transport: str


class AuditMeta(msgspec.Struct, omit_defaults=True):
    limit: int
    next: int | None = None
    """Pass as `before` for older rows."""


class AuditPageView(msgspec.Struct):
    data: list[AuditEntryView]
    meta: AuditMeta


def cache_stats_view(stats: cache_admin.CacheStats) -> CacheStatsView:
    return CacheStatsView(
        available=stats.available,
        list_ttl=stats.list_ttl,
        entries=stats.entries,
        memory_bytes=stats.memory_bytes,
        hits=stats.hits,
        misses=stats.misses,
        bypasses=stats.bypasses,
        hit_ratio=stats.hit_ratio,
        since=stats.since,
        truncated=stats.truncated,
        types={
            name: TypeCacheView(entries=t.entries, memory_bytes=t.memory_bytes)
            for name, t in stats.types.items()
        },
    )


class AdminController(Controller):
    path = "/admin"
    tags = ("admin",)

    @get("/cache", responses=problems(401, 403))
    async def cache_stats(self, services: NamedDependency[Services]) -> CacheStatsView:
        """Entries and memory by type, hits/misses/bypasses of every process (manageCache)."""
        principal = await caller()
        return cache_stats_view(await cache_admin.cache_stats(services, principal))

    @delete("/cache", status_code=200, responses=problems(400, 401, 403, 422, 503))
    async def purge_cache(
        self,
        services: NamedDependency[Services],
        type_name: Annotated[
            str | None, QueryParameter(name="type", max_length=40, description="Only this type.")
        ] = None,
        user_id: Annotated[
            int | None, QueryParameter(name="user", gt=0, le=MAX_ID, description="Only this user.")
        ] = None,
    ) -> PurgeResult:
        """Delete cached entries: all, of one type, of one user (manageCache)."""
        principal = await caller()
        try:
            deleted = await cache_admin.purge_cache(
                services, principal, type_name=type_name, user_id=user_id
            )
        except CACHE_ERRORS as exc:
            raise Unavailable("the response cache is unreachable; nothing was purged") from exc
        return PurgeResult(deleted=deleted, type=type_name, user=user_id)

    @get("/audit", responses=problems(400, 401, 403, 422))
    async def list_audit(
        self,
        *,
        services: NamedDependency[Services],
        user_id: Annotated[int | None, QueryParameter(name="user", gt=0, le=MAX_ID)] = None,
        type_name: Annotated[str | None, QueryParameter(name="type", max_length=40)] = None,
        record_id: Annotated[int | None, QueryParameter(name="record", gt=0, le=MAX_ID)] = None,
        before: Annotated[
            int | None, QueryParameter(gt=0, le=MAX_ID, description="A previous `meta.next`.")
        ] = None,
        limit: Annotated[int, QueryParameter(name="_limit", ge=1, le=audit.MAX_LIMIT)] = 100,
    ) -> AuditPageView:
        """Reads of audited types (`read_access_logging`), newest first (manageUsers)."""
        principal = await caller()
        page = await audit.list_audit(
            services,
            principal,
            user_id=user_id,
            type_name=type_name,
            record_id=record_id,
            before=before,
            limit=limit,
        )
        return AuditPageView(
            data=[
                AuditEntryView(
                    id=e.id,
                    occurred_on=e.occurred_on,
                    user_id=e.user_id,
                    type=e.type_name,
                    record_id=e.record_id,
                    action=e.action,
                    transport=e.transport,
                )
                for e in page.data
            ],
            meta=AuditMeta(limit=limit, next=page.next),
        )
