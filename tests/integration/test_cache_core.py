"""DESIGN §7 at the core: `ResponseCache` on a real Valkey, no HTTP in between.

Hits and misses, per-principal entries and ETags, generation-based invalidation across
workers (including a write racing a read), single flight, `valid_to`, Valkey down, and
the canonical request-shape hash. Nothing here touches the database, so SQLite only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.cache import Cached, CacheKey, ResponseCache, request_shape_hash
from resolvers.principal import Principal
from resolvers.services import Services, utc_now
from tests.conftest import Backend, make_settings, principal_with_roles

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""Nothing in the cache touches the database: one backend is enough."""

SHAPE = request_shape_hash({"fields": ["name"], "limit": 10})


def principal(
    services: Services,
    user_id: int = 7,
    roles: tuple[str, ...] = ("integration",),
    valid_to: dt.datetime | None = None,
) -> Principal:
    return principal_with_roles(services, user_id, *roles, valid_to=valid_to)


class Source:
    """A compute function that counts its calls and can run a hook inside itself."""

    def __init__(
        self,
        body: bytes = b'{"id":1}',
        *,
        delay: float = 0.0,
        during: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.body = body
        self.delay = delay
        self.during = during
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        if self.during is not None:
            await self.during()
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.body


@pytest.fixture
async def second_worker(settings: Settings) -> AsyncIterator[Services]:
    """Separate services (own Valkey connections) over the same Valkey: another worker."""
    async with open_services(settings, migrate=False) as opened:
        yield opened


async def _hits(cache: ResponseCache, who: Principal, key: CacheKey) -> bool:
    result = await cache.read(who, key, Source(b"recomputed"))
    return result.status == "HIT"


# --- 1. miss, hit, bypass -------------------------------------------------------------


@SQLITE
async def test_miss_then_hit_and_bypass_never_stores(services: Services) -> None:
    cache = services.cache
    who = principal(services)
    key = cache.record_key(who, "Company", 1, SHAPE)
    source = Source()

    first = await cache.read(who, key, source)
    second = await cache.read(who, key, source)

    assert first.status == "MISS"
    assert second == Cached(body=first.body, etag=first.etag, status="HIT")
    assert source.calls == 1
    assert first.body == source.body

    other = cache.record_key(who, "Company", 2, SHAPE)
    bypassed = await cache.bypass(who, source)
    assert bypassed.status == "BYPASS"
    assert bypassed.body == source.body
    assert bypassed.etag == first.etag  # same principal, same body
    assert await services.valkey.exists(other.entry) == 0
    assert (await cache.read(who, other, source)).status == "MISS"


# --- 2. principals never share ----------------------------------------------------------


@SQLITE
async def test_principals_with_different_roles_never_share(services: Services) -> None:
    cache = services.cache
    integration = principal(services, roles=("integration",))
    reporter = principal(services, roles=("reporter",))
    assert integration.fingerprint != reporter.fingerprint

    key_a = cache.record_key(integration, "Deal", 5, SHAPE)
    key_b = cache.record_key(reporter, "Deal", 5, SHAPE)
    assert key_a.entry != key_b.entry
    assert key_a.generations == key_b.generations  # one record, one generation

    seen_by_a = await cache.read(integration, key_a, Source(b'{"id":5,"margin":1}'))
    seen_by_b = await cache.read(reporter, key_b, Source(b'{"id":5,"margin":1}'))
    assert seen_by_a.status == seen_by_b.status == "MISS"  # b did not get a's entry
    assert seen_by_a.body == seen_by_b.body
    assert seen_by_a.etag != seen_by_b.etag

    list_a = cache.type_key(integration, "Deal", "list", SHAPE)
    list_b = cache.type_key(reporter, "Deal", "list", SHAPE)
    assert list_a.entry != list_b.entry
    await cache.read(integration, list_a, Source(b"[]"))
    assert (await cache.read(reporter, list_b, Source(b"[]"))).status == "MISS"


# --- 3. invalidation ------------------------------------------------------------------


@SQLITE
async def test_written_invalidates_record_and_lists_of_the_type(services: Services) -> None:
    cache = services.cache
    alice = principal(services, user_id=1)
    bob = principal(services, user_id=2, roles=("reporter",))

    record_1 = {p.login: cache.record_key(p, "Company", 1, SHAPE) for p in (alice, bob)}
    record_2 = {p.login: cache.record_key(p, "Company", 2, SHAPE) for p in (alice, bob)}
    lists = {p.login: cache.type_key(p, "Company", "list", SHAPE) for p in (alice, bob)}
    by_property = {p.login: cache.type_key(p, "Company", "by:name", SHAPE) for p in (alice, bob)}
    other_type = {p.login: cache.type_key(p, "Contact", "list", SHAPE) for p in (alice, bob)}
    for p in (alice, bob):
        for keys in (record_1, record_2, lists, by_property, other_type):
            await cache.read(p, keys[p.login], Source())
            assert await _hits(cache, p, keys[p.login])

    await cache.written("Company", 1)

    for p in (alice, bob):
        assert not await _hits(cache, p, record_1[p.login])
        assert not await _hits(cache, p, lists[p.login])
        assert not await _hits(cache, p, by_property[p.login])
        assert await _hits(cache, p, record_2[p.login])  # another record of the type
        assert await _hits(cache, p, other_type[p.login])  # another type
        # ...and the recomputed entries hit again until the next write.
        assert await _hits(cache, p, record_1[p.login])
        assert await _hits(cache, p, lists[p.login])

    await cache.written("Company", None)  # a type-wide write (e.g. a bulk change)
    for p in (alice, bob):
        assert not await _hits(cache, p, lists[p.login])
        assert await _hits(cache, p, record_1[p.login])


# --- 4. two workers -------------------------------------------------------------------


@SQLITE
async def test_a_write_through_one_worker_invalidates_the_other(
    services: Services, second_worker: Services
) -> None:
    one, two = services.cache, second_worker.cache
    who = principal(services)
    record = two.record_key(who, "Deal", 3, SHAPE)
    listing = two.type_key(who, "Deal", "list", SHAPE)
    assert record == one.record_key(who, "Deal", 3, SHAPE)

    for key in (record, listing):
        await two.read(who, key, Source())
        assert await _hits(one, who, key)  # shared across workers
        assert await _hits(two, who, key)

    await one.written("Deal", 3)

    for key in (record, listing):
        assert not await _hits(two, who, key)
        assert await _hits(one, who, key)  # two's recomputation is shared back


# --- 5. the write race ----------------------------------------------------------------


RACES = {
    # name: (bumps before the reader's MGET, during its compute, after its store)
    "both bumps during compute": (0, 2, 0),
    "first bump during compute, second after": (0, 1, 1),
    "first bump before the read, second during compute": (1, 1, 0),
    "first bump before the read, second after": (1, 0, 1),
}


@SQLITE
@pytest.mark.parametrize("race", sorted(RACES))
async def test_a_write_racing_a_read_leaves_no_stale_entry(
    services: Services, second_worker: Services, race: str
) -> None:
    """The writer bumps before and after its commit; the reader's compute sees old data."""
    reader, writer = services.cache, second_worker.cache
    who = principal(services)
    before, during, after = RACES[race]

    async def write(times: int) -> None:
        for _ in range(times):
            await writer.written("Deal", 9)

    for key in (
        reader.record_key(who, "Deal", 9, SHAPE),
        reader.type_key(who, "Deal", "list", SHAPE),
    ):
        await write(before)
        stale = Source(b'{"title":"old"}', during=lambda n=during: write(n))  # type: ignore[misc]
        assert (await reader.read(who, key, stale)).status == "MISS"
        await write(after)

        fresh = Source(b'{"title":"new"}')
        following = await reader.read(who, key, fresh)
        assert following.status == "MISS", race
        assert following.body == b'{"title":"new"}'
        assert fresh.calls == 1
        assert await _hits(reader, who, key)  # the fresh entry is kept


# --- 6. single flight -----------------------------------------------------------------


@SQLITE
async def test_single_flight_in_one_worker(services: Services) -> None:
    cache = services.cache
    who = principal(services)
    key = cache.type_key(who, "Company", "list", SHAPE)
    source = Source(b"[1,2,3]", delay=0.05)

    results = await asyncio.gather(*(cache.read(who, key, source) for _ in range(100)))

    assert source.calls == 1
    assert {r.body for r in results} == {b"[1,2,3]"}
    assert len({r.etag for r in results}) == 1
    assert (await cache.read(who, key, source)).status == "HIT"


@SQLITE
async def test_single_flight_across_two_workers(
    services: Services, second_worker: Services
) -> None:
    one, two = services.cache, second_worker.cache
    who = principal(services)
    key = one.type_key(who, "Company", "list", SHAPE)
    source = Source(b"[1,2,3]", delay=0.1)

    results = await asyncio.gather(
        *(cache.read(who, key, source) for _ in range(50) for cache in (one, two))
    )

    assert 1 <= source.calls <= 2
    assert {r.body for r in results} == {b"[1,2,3]"}
    assert len({r.etag for r in results}) == 1
    assert await _hits(one, who, key)
    assert await _hits(two, who, key)


@SQLITE
async def test_a_failing_compute_reaches_every_waiter_and_stores_nothing(
    services: Services,
) -> None:
    cache = services.cache
    who = principal(services)
    key = cache.record_key(who, "Company", 1, SHAPE)

    async def broken() -> bytes:
        await asyncio.sleep(0.02)
        raise RuntimeError("database said no")

    results = await asyncio.gather(
        *(cache.read(who, key, broken) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await services.valkey.exists(key.entry) == 0
    assert (await cache.read(who, key, Source())).status == "MISS"


# --- 7. valid_to ----------------------------------------------------------------------


@SQLITE
async def test_an_entry_never_outlives_valid_to(services: Services) -> None:
    cache = services.cache

    soon = principal(services, valid_to=utc_now() + dt.timedelta(seconds=1))
    key = cache.record_key(soon, "Company", 1, SHAPE)
    await cache.read(soon, key, Source())
    assert await services.valkey.pttl(key.entry) <= 1_000  # -2 (not stored) passes too
    await asyncio.sleep(1.5)
    assert await services.valkey.exists(key.entry) == 0
    assert not await _hits(cache, soon, key)

    later = principal(services, valid_to=utc_now() + dt.timedelta(seconds=2.5))
    key = cache.type_key(later, "Company", "list", SHAPE)
    await cache.read(later, key, Source())
    assert 0 < await services.valkey.pttl(key.entry) <= 2_500

    past = principal(services, valid_to=utc_now() - dt.timedelta(seconds=1))
    key = cache.record_key(past, "Company", 1, SHAPE)
    assert (await cache.read(past, key, Source())).status == "MISS"
    assert await services.valkey.exists(key.entry) == 0
    assert not await _hits(cache, past, key)


# --- 8. Valkey down -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@SQLITE
async def test_valkey_unreachable_degrades_to_bypass(backend: Backend, tmp_path: Path) -> None:
    settings = make_settings(backend, f"valkey://127.0.0.1:{_closed_port()}", tmp_path)
    async with open_services(settings, migrate=True) as services:
        cache = services.cache
        who = principal(services)
        source = Source(b'{"id":1}')
        for key in (
            cache.record_key(who, "Company", 1, SHAPE),
            cache.type_key(who, "Company", "list", SHAPE),
        ):
            result = await cache.read(who, key, source)
            assert result.status == "BYPASS"
            assert result.body == b'{"id":1}'
            assert result.etag
        assert source.calls == 2
        await cache.written("Company", 1)
        await cache.written("Company", None)


# --- 9. request shape hash ------------------------------------------------------------

_values = st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none())
_shapes = st.dictionaries(st.text(max_size=6), _values, min_size=1, max_size=8)


@hypothesis_settings(max_examples=60, deadline=None)
@given(shape=_shapes, data=st.data())
def test_request_shape_hash_is_canonical(shape: dict[str, object], data: st.DataObject) -> None:
    reordered = dict(data.draw(st.permutations(list(shape.items()))))
    assert request_shape_hash(reordered) == request_shape_hash(shape)
    assert request_shape_hash({"nested": reordered}) == request_shape_hash({"nested": shape})

    changed_key = data.draw(st.sampled_from(sorted(shape)))
    old = shape[changed_key]
    new_value = data.draw(_values.filter(lambda v: v != old or type(v) is not type(old)))
    changed = {**shape, changed_key: new_value}
    assert request_shape_hash(changed) != request_shape_hash(shape)
