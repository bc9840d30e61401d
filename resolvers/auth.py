"""API keys: issue, authenticate, list, revoke.

A key reads `jgw_<public id>_<secret>`: 64 random bits of public id to find the row,
256 random bits of secret of which only the SHA-256 digest is stored and compared in
constant time. The secret is shown once.

Authentication may be served from Valkey (`<prefix>:auth:<public id>`, a snapshot of
the key and its user) so that a cached read does no database work. Every change that
could revoke a key — revocation, a role or group change, deactivation, a validity
change, deletion — replaces its user's snapshots with a tombstone before and after it
commits, and snapshots are only ever stored where no entry exists (`SET NX`), so a
request that read the old state cannot store it over the tombstone; the
validity window and expiry are checked against the clock on every request; and with
Valkey unreachable the check falls back to the database. A key that cannot be checked
is never accepted. A snapshot carries the response cache's epoch, read before the
database was: a process that saw Valkey fail (a tombstone that could not be written)
bumps the epoch on its next successful call, so a Valkey that comes back with its data
cannot serve a snapshot from before a change made while it was down.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers import ratelimit
from resolvers.errors import FieldError, Forbidden, Invalid, NotFound, Unauthenticated
from resolvers.key_leases import announce
from resolvers.memo import SingleFlight
from resolvers.principal import Principal, UserState, build_principal, effective_roles
from resolvers.services import CACHE_ERRORS, Services
from resolvers.tenant import Permission
from resolvers.timezones import parse_instant

__all__ = [
    "ApiKey",
    "IssuedKey",
    "KeyOwner",
    "authenticate",
    "evict_user",
    "issue_key",
    "issue_key_with_password",
    "list_keys",
    "revoke_key",
]

_log = logging.getLogger("gateway.auth")

KEY_PATTERN = re.compile(r"jgw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
SNAPSHOT_TTL = 60
"""Seconds a key snapshot may live in Valkey; bounds staleness if an eviction is lost."""
_TOMBSTONE = b"-"
"""What an eviction writes in place of a snapshot, followed by a token of its own: no two
evictions write the same bytes, so a request that saw one never shares a load begun
before it (`_load_once`)."""
_SNAPSHOT_AGE = dt.timedelta(seconds=SNAPSHOT_TTL)
_LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
_MAX_NAME = 100
_MAX_PASSWORD = 1024


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's metadata; never its secret."""

    id: int
    name: str
    user_id: int
    created_on: dt.datetime
    last_used_on: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_on: dt.datetime | None


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """The user a key acts as, with what that grants."""

    id: int
    login: str
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    timezone: str
    """The display zone: the user's own, else the tenant's default."""

    @classmethod
    def of(cls, principal: Principal) -> KeyOwner:
        return cls(
            id=principal.user_id,
            login=principal.login,
            roles=tuple(sorted(principal.roles)),
            permissions=tuple(sorted(p.value for p in principal.permissions)),
            timezone=principal.zone.key,
        )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str
    """The full `jgw_...` key, shown to the caller once."""


class _Snapshot(msgspec.Struct, frozen=True):
    key_id: int
    digest: str
    expires_at: dt.datetime | None
    revoked: bool
    user: UserState
    epoch: int = 0
    """The cache epoch read before the database was (`ResponseCache.epoch`)."""
    loaded_on: dt.datetime | None = None
    """When it was read from the database: memory keeps it `SNAPSHOT_TTL` at most, as
    Valkey does (None: written by an older version, never kept in memory)."""


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_Snapshot)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _cache_key(services: Services, public_id: str) -> str:
    return f"{services.key_prefix}:auth:{public_id}"


# --- authentication ---------------------------------------------------------------


async def authenticate(services: Services, raw_key: str | None) -> Principal:
    """Resolve a presented key to its principal, or raise `Unauthenticated`."""
    match = KEY_PATTERN.fullmatch(raw_key or "")
    if match is None:
        raise Unauthenticated("missing or malformed API key")
    public_id, secret = match.groups()
    now = services.clock()
    leases = services.key_leases
    cached = None if leases is None else leases.get(public_id)
    if cached is not None and not _fresh(cached[0], now):
        cached = None
    if cached is None:
        mark = 0 if leases is None else leases.mark()
        cached, epoch, seen = await _cached_snapshot(services, public_id)
        if cached is None:
            cached = await _load_once(services, public_id, epoch, seen)
            if cached is None:
                raise Unauthenticated("unknown API key")
        if leases is not None and epoch is not None:
            leases.offer(public_id, cached, mark)
        now = services.clock()  # after the reads
    snapshot, principal = cached
    if not hmac.compare_digest(bytes.fromhex(snapshot.digest), _digest(secret)):
        raise Unauthenticated("unknown API key")
    if snapshot.revoked:
        raise Unauthenticated("this API key has been revoked")
    if snapshot.expires_at is not None and now >= snapshot.expires_at:
        raise Unauthenticated("this API key has expired")
    if not snapshot.user.active or not snapshot.user.within_window(now):
        raise Unauthenticated("this API key's user is inactive or outside its validity window")
    if not principal.has(Permission.USE_API):
        raise Unauthenticated("this API key's user may not use the API")
    return principal


def _fresh(snapshot: _Snapshot, now: dt.datetime) -> bool:
    """Whether memory may still serve it: changes made behind the gateway's back (no
    eviction) apply within `SNAPSHOT_TTL`, with or without memory."""
    return snapshot.loaded_on is not None and now - snapshot.loaded_on < _SNAPSHOT_AGE


# (tenant, snapshot bytes read from Valkey) → their decoded form and principal. Keyed by
# the exact bytes, an entry can never outlive a change: a change writes different bytes (or a
# tombstone), and Valkey is still read on every request. Time-based checks (expiry,
# validity window) run on every request regardless.
_DECODED: dict[tuple[str, bytes], tuple[_Snapshot, Principal]] = {}
_DECODED_LIMIT = 10_000


def _decoded(services: Services, raw: bytes) -> tuple[_Snapshot, Principal]:
    key = (services.tenant.digest, raw)
    if (hit := _DECODED.get(key)) is not None:
        return hit
    snapshot = _DECODER.decode(raw)
    principal = build_principal(services.tenant, snapshot.user, key_id=snapshot.key_id)
    if len(_DECODED) >= _DECODED_LIMIT:
        _DECODED.clear()
    _DECODED[key] = (snapshot, principal)
    return snapshot, principal


_Decoded = tuple[_Snapshot, Principal]
_LOADS: SingleFlight[tuple[int, str, int | None, bytes | None], _Decoded | None] = SingleFlight()
"""Snapshot loads in flight, by services, key, epoch and what Valkey held instead."""


async def _load_once(
    services: Services, public_id: str, epoch: int | None, seen: bytes | None
) -> _Decoded | None:
    """Load a key's snapshot from the database and offer it to Valkey, once for every
    request that found the same thing in Valkey (nothing, a tombstone, a stale snapshot).

    A hot key's snapshot expires every `SNAPSHOT_TTL` seconds, under load: without this,
    every request in flight at that moment would load it, and write `last_used_on`.
    A request that saw an eviction's tombstone shares only a load begun after that
    eviction (each tombstone is unique), so a revocation still applies at once.
    """

    async def load() -> _Decoded | None:
        loaded = await _load_snapshot(services, public_id, epoch or 0)
        if loaded is None:
            return None
        if epoch is None:  # Valkey unreachable: nothing to store it in
            return _decoded(services, _ENCODER.encode(loaded))
        return _decoded(services, await _store_snapshot(services, public_id, loaded))

    decoded, _ = await _LOADS.run((id(services), public_id, epoch, seen), load)
    return decoded


async def _cached_snapshot(
    services: Services, public_id: str
) -> tuple[_Decoded | None, int | None, bytes | None]:
    """The cached snapshot, decoded (memoised by its bytes), or None on any miss; the
    current epoch (None: Valkey unreachable); and what Valkey held (None: nothing)."""
    try:
        await services.cache.recover()
        raw, epoch = await services.reads.get_many(
            [_cache_key(services, public_id), services.cache.epoch()]
        )
    except CACHE_ERRORS:  # Valkey down: fall back to the database
        services.cache.note_failure()
        _log.warning("auth cache unavailable; checking the key in the database")
        return None, None, None
    current = int(epoch or 0)
    if raw is None:
        return None, current, None
    seen = bytes(raw)
    if seen.startswith(_TOMBSTONE):
        return None, current, seen
    try:
        decoded = _decoded(services, seen)
    except msgspec.DecodeError:  # written by another version: treat as a miss
        return None, current, seen
    if decoded[0].epoch != current:  # from before Valkey was unreachable: maybe stale
        return None, current, seen
    return decoded, current, seen


async def _store_snapshot(services: Services, public_id: str, snapshot: _Snapshot) -> bytes:
    """Offer the snapshot to Valkey; return its bytes either way."""
    raw = _ENCODER.encode(snapshot)
    try:
        await services.valkey.set(_cache_key(services, public_id), raw, ex=SNAPSHOT_TTL, nx=True)
    except CACHE_ERRORS:  # caching is an optimisation; the answer stands
        _log.warning("auth cache unavailable; key snapshot not stored")
    return raw


async def _load_snapshot(services: Services, public_id: str, epoch: int) -> _Snapshot | None:
    system = services.schema.system
    keys, users = system.api_keys, system.users
    async with services.engine.connect() as conn:
        row = (
            await conn.execute(
                select(keys, users.c.id.label("uid"))
                .join(users, users.c.id == keys.c.user_id)
                .where(keys.c.public_id == public_id)
            )
        ).one_or_none()
        if row is None:
            return None
        user = await load_user_snapshot(conn, services, row.user_id)
    if user is None:
        return None
    now = services.clock()
    if row.last_used_on is None or now - row.last_used_on >= _LAST_USED_RESOLUTION:
        # A write at most once a minute per key, not one per request.
        async with services.writer.begin() as conn:
            await conn.execute(update(keys).where(keys.c.id == row.id).values(last_used_on=now))
    return _Snapshot(
        key_id=row.id,
        digest=row.digest.hex(),
        expires_at=row.expires_at,
        revoked=row.revoked_on is not None,
        user=user,
        epoch=epoch,
        loaded_on=now,
    )


async def load_user_snapshot(
    conn: AsyncConnection, services: Services, user_id: int
) -> UserState | None:
    system = services.schema.system
    user = (
        await conn.execute(select(system.users).where(system.users.c.id == user_id))
    ).one_or_none()
    if user is None:
        return None
    roles = await conn.scalars(
        select(system.user_roles.c.role).where(system.user_roles.c.user_id == user_id)
    )
    groups = await conn.scalars(
        select(system.user_groups.c.group_name).where(system.user_groups.c.user_id == user_id)
    )
    return UserState(
        id=user.id,
        login=user.login,
        active=user.active,
        valid_from=user.valid_from,
        valid_to=user.valid_to,
        timezone=user.timezone,
        roles=tuple(sorted(roles)),
        groups=tuple(sorted(groups)),
        security_version=user.security_version,
    )


async def evict_user(services: Services, user_id: int) -> None:
    """Tombstone every cached key snapshot of a user (call before and after changing it)."""
    keys = services.schema.system.api_keys
    async with services.engine.connect() as conn:
        public_ids = (
            await conn.scalars(select(keys.c.public_id).where(keys.c.user_id == user_id))
        ).all()
    await _evict(services, public_ids)


async def _evict(services: Services, public_ids: Sequence[str]) -> None:
    if not public_ids:
        return
    try:
        async with services.valkey.pipeline(transaction=False) as pipe:
            for public_id in public_ids:
                tombstone = _TOMBSTONE + secrets.token_hex(8).encode()
                pipe.set(_cache_key(services, public_id), tombstone, ex=SNAPSHOT_TTL)
            await pipe.execute()
    except CACHE_ERRORS:
        # Nothing cached can be served while Valkey is unreachable; if it comes back with
        # the entry, this process's next successful call bumps the epoch, which the entry
        # does not carry. Say so loudly.
        services.cache.note_failure()
        _log.exception("could not evict %d key snapshot(s) from Valkey", len(public_ids))
    await announce(services.valkey, services.key_prefix, public_ids)


# --- issuing ----------------------------------------------------------------------


async def issue_key_with_password(
    services: Services,
    *,
    login: str,
    password: str,
    name: str,
    expires_at: object,
    client_address: str,
) -> tuple[IssuedKey, KeyOwner]:
    """Exchange a login and password for a new key; limited per account and address."""
    _check_name(name)
    account = ratelimit.account_subject(login)
    address = ratelimit.address_subject(client_address)
    await ratelimit.check(services, [account, address])
    users = services.schema.system.users
    async with services.engine.connect() as conn:
        row = (
            await conn.execute(
                select(users.c.id, users.c.password_hash).where(users.c.login == login.strip())
            )
        ).one_or_none()
    stored = row.password_hash if row is not None else None
    verification = await services.passwords.verify_or_dummy(stored, password[:_MAX_PASSWORD])
    if row is None or not verification.ok:
        if await ratelimit.record_failure(services, account=account, address=address):
            await ratelimit.check(services, [account, address])
        raise Unauthenticated("invalid login or password")
    # Locked by concurrent failures while this one verified: answer as they are answered.
    await ratelimit.check(services, [account, address])
    await ratelimit.reset(services, account)
    if verification.new_hash is not None:
        async with services.writer.begin() as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == row.id)
                .values(password_hash=verification.new_hash, updated_on=services.clock())
            )
    principal = await principal_for_user(services, row.id)
    if principal is None or not principal.has(Permission.USE_API):
        raise Unauthenticated("this user may not use the API")
    issued, owner = await issue_key(
        services, principal, user_id=row.id, name=name, expires_at=expires_at
    )
    return issued, owner


async def principal_for_user(services: Services, user_id: int) -> Principal | None:
    """The principal of an active user inside its window, or None."""
    async with services.engine.connect() as conn:
        snapshot = await load_user_snapshot(conn, services, user_id)
    if snapshot is None:
        return None
    state = snapshot
    if not state.active or not state.within_window(services.clock()):
        return None
    return build_principal(services.tenant, state)


async def issue_key(
    services: Services,
    actor: Principal,
    *,
    user_id: int,
    name: str,
    expires_at: object = None,
) -> tuple[IssuedKey, KeyOwner]:
    """Create a key for `user_id`; for someone else, `actor` needs generateOthersApiKeys
    and every role that user holds (as for managing it).

    `expires_at` is an ISO 8601 instant (naive: the actor's zone) or None.
    """
    _check_name(name)
    if user_id != actor.user_id:
        actor.require(Permission.GENERATE_OTHERS_API_KEYS)
    requested = _expiry(expires_at, actor)
    async with services.engine.connect() as conn:
        snapshot = await load_user_snapshot(conn, services, user_id)
    if snapshot is None:
        raise NotFound(f"no user with id {user_id}")
    owner = build_principal(services.tenant, snapshot)
    if user_id != actor.user_id and not actor.covers(owner.roles):
        # A key acts as its user: minting one must not grant the actor roles it lacks.
        raise Forbidden("this user holds roles you do not hold")
    now = services.clock()
    bounded = _bounded_expiry(requested, snapshot.valid_to, now)
    public_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    keys = services.schema.system.api_keys
    async with services.writer.begin() as conn:
        key_id = await conn.scalar(
            insert(keys)
            .values(
                public_id=public_id,
                digest=_digest(secret),
                name=name.strip(),
                user_id=user_id,
                created_on=now,
                created_by=actor.user_id,
                expires_at=bounded,
            )
            .returning(keys.c.id)
        )
    key = ApiKey(
        id=int(key_id or 0),
        name=name.strip(),
        user_id=user_id,
        created_on=now.astimezone(actor.zone),
        last_used_on=None,
        expires_at=bounded.astimezone(actor.zone) if bounded else None,
        revoked_on=None,
    )
    return IssuedKey(key=key, secret=f"jgw_{public_id}_{secret}"), KeyOwner.of(owner)


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > _MAX_NAME:
        raise Invalid("invalid key name", [FieldError("name", f"1 to {_MAX_NAME} characters")])


def _expiry(value: object, actor: Principal) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value, actor.zone)
    except ValueError as exc:
        raise Invalid("expires_at is not valid", [FieldError("expires_at", str(exc))]) from exc


def _bounded_expiry(
    requested: dt.datetime | None, valid_to: dt.datetime | None, now: dt.datetime
) -> dt.datetime | None:
    """Default to the user's `valid_to`; never beyond it; never in the past."""
    if requested is not None and requested <= now:
        raise Invalid(
            "expires_at is in the past", [FieldError("expires_at", "must be in the future")]
        )
    if requested is None:
        return valid_to
    if valid_to is not None and requested > valid_to:
        return valid_to
    return requested


# --- listing and revoking ---------------------------------------------------------


def _api_key(row: Row[Any], zone: ZoneInfo) -> ApiKey:
    def local(value: dt.datetime | None) -> dt.datetime | None:
        return value.astimezone(zone) if value is not None else None

    return ApiKey(
        id=row.id,
        name=row.name,
        user_id=row.user_id,
        created_on=row.created_on.astimezone(zone),
        last_used_on=local(row.last_used_on),
        expires_at=local(row.expires_at),
        revoked_on=local(row.revoked_on),
    )


async def current_key(services: Services, actor: Principal) -> ApiKey:
    """The key this request authenticated with."""
    if actor.key_id is None:
        raise NotFound("this request did not authenticate with an API key")
    return await get_key(services, actor, actor.key_id)


async def get_key(services: Services, actor: Principal, key_id: int) -> ApiKey:
    keys = services.schema.system.api_keys
    async with services.engine.connect() as conn:
        row = (await conn.execute(select(keys).where(keys.c.id == key_id))).one_or_none()
    if row is None or (row.user_id != actor.user_id and not actor.has(Permission.MANAGE_USERS)):
        raise NotFound(f"no API key with id {key_id}")
    return _api_key(row, actor.zone)


async def list_keys(services: Services, actor: Principal) -> list[ApiKey]:
    """The caller's own keys, newest first."""
    keys = services.schema.system.api_keys
    async with services.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(keys).where(keys.c.user_id == actor.user_id).order_by(keys.c.id.desc())
            )
        ).all()
    return [_api_key(r, actor.zone) for r in rows]


async def revoke_key(services: Services, actor: Principal, key_id: int) -> None:
    """Revoke one key: the caller's own, or, with manageUsers, one of a user it covers."""
    keys = services.schema.system.api_keys
    async with services.engine.connect() as conn:
        row = (
            await conn.execute(select(keys.c.user_id, keys.c.public_id).where(keys.c.id == key_id))
        ).one_or_none()
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    if row.user_id != actor.user_id:
        if not actor.has(Permission.MANAGE_USERS):
            # Someone else's key is indistinguishable from a missing one.
            raise NotFound(f"no API key with id {key_id}")
        async with services.engine.connect() as conn:
            owner = await load_user_snapshot(conn, services, row.user_id)
        if owner is not None and not actor.covers(
            effective_roles(services.tenant, owner.roles, owner.groups)
        ):
            raise Forbidden("this key's user holds roles you do not hold")
    await _evict(services, [row.public_id])
    async with services.writer.begin() as conn:
        await conn.execute(
            update(keys)
            .where(keys.c.id == key_id, keys.c.revoked_on.is_(None))
            .values(revoked_on=services.clock())
        )
    await _evict(services, [row.public_id])
