"""What every resolver works with: the tenant, its schema, the engine, the cache client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine
from valkey.asyncio import Valkey

from resolvers.batching import BatchedReads
from resolvers.cache import CACHE_ERRORS, ResponseCache
from resolvers.passwords import Passwords
from resolvers.ratelimit import LoginLimits
from resolvers.storage import Schema
from resolvers.tenant import Tenant

__all__ = ["CACHE_ERRORS", "Services", "utc_now"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Services:
    """Process-wide resolver dependencies, built by the composition root and passed in."""

    tenant: Tenant
    schema: Schema
    engine: AsyncEngine
    """For reads."""
    writer: AsyncEngine
    """The same pool, for transactions that write (see `storage.writer`)."""
    valkey: Valkey
    reads: BatchedReads
    """GETs coalesced per event-loop turn into one MGET (see `batching`)."""
    passwords: Passwords
    cache: ResponseCache
    """Rendered read results, per principal and request shape (see `cache`)."""
    login_limits: LoginLimits = field(default_factory=LoginLimits)
    key_prefix: str = "jgw"
    clock: Callable[[], dt.datetime] = field(default=utc_now)
