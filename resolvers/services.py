"""What every resolver works with: the tenant, its schema, the engine, the cache client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from valkey.asyncio import Valkey

from resolvers.batching import BatchedReads
from resolvers.blobs import FileStorage
from resolvers.cache import CACHE_ERRORS, ResponseCache
from resolvers.commands import CommandRegistry
from resolvers.key_leases import KeyLeases
from resolvers.memo import Lru
from resolvers.notify import Notifiers
from resolvers.passwords import Passwords
from resolvers.ratelimit import LoginLimits
from resolvers.storage import Schema
from resolvers.tenant import Tenant

__all__ = ["CACHE_ERRORS", "ChallengePolicy", "Services", "utc_now"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class ChallengePolicy:
    """How account challenges behave (`GATEWAY_CHALLENGE_*`; see `resolvers.challenges`)."""

    code_length: int = 6
    ttl: int = 600
    """Seconds a secret stays valid."""
    max_attempts: int = 5
    """Wrong guesses a secret survives."""
    cooldown: int = 60
    """Seconds between two sends of one challenge."""
    max_retries: int = 5
    """Retries over a challenge's lifetime."""
    link_origins: tuple[str, ...] = ()
    """Origins (`https://app.example`) a `link_url` may point at."""
    public_url: str = "http://127.0.0.1:8000"
    """Where the gateway is reached: links without a `link_url` point at it."""
    reset_revokes_keys: bool = True
    """A completed password reset revokes the user's API keys."""


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
    notifiers: Notifiers
    """E-mail and SMS delivery of challenge messages."""
    commands: CommandRegistry
    """The tenant's commands (`resolvers.commands.load_commands`)."""
    login_limits: LoginLimits = field(default_factory=LoginLimits)
    challenges: ChallengePolicy = field(default_factory=ChallengePolicy)
    statements: Lru[Hashable, Any] = field(default_factory=lambda: Lru(256))
    """Compiled read statements, per principal fingerprint and request shape (see
    `collections`): a statement holds no instant and no request value but the shape's."""
    key_prefix: str = "jgw"
    clock: Callable[[], dt.datetime] = field(default=utc_now)
    files: FileStorage | None = None
    """Uploaded files (see `blobs`); None: file routes answer 503."""
    key_leases: KeyLeases[Any] | None = None
    """Key snapshots in memory while a lease holds (see `key_leases`); None: a key check
    reads Valkey on every request (the CLI, a Valkey cluster)."""
