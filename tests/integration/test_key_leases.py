"""Key snapshots in memory under a lease (`resolvers.key_leases`): a key check without
I/O while every revocation still applies on the very next request, on every process.

Each test opens its "processes" as separate services on one real Valkey, each holding
its own lease, as workers do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

import pytest
from valkey.asyncio import Valkey

from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.auth import KEY_PATTERN, SNAPSHOT_TTL, authenticate, revoke_key
from resolvers.errors import Unauthenticated
from resolvers.key_leases import KeyLeases, announce
from resolvers.principal import system_principal
from resolvers.services import Services
from tests.conftest import issue_admin_key, kill_subscriptions, statements_on, wait_for_lease

Opener = Callable[[], AbstractAsyncContextManager[Services]]


@pytest.fixture
async def process(settings: Settings) -> Opener:
    """Opens a gateway process's services, holding key leases, on `settings`."""
    async with open_services(settings, migrate=True):
        pass  # the schema, once

    def opener() -> AbstractAsyncContextManager[Services]:
        return open_services(settings, migrate=False, hold_keys=True)

    return opener


async def _held(services: Services) -> KeyLeases[Any]:
    leases = services.key_leases
    assert leases is not None
    await wait_for_lease(leases)
    return leases


async def _admin_key(services: Services) -> tuple[str, str, int]:
    """A new key of the admin: the key, its public id, its id."""
    issued = await issue_admin_key(services, "leases")
    match = KEY_PATTERN.fullmatch(issued.secret)
    assert match is not None
    return issued.secret, match.group(1), issued.key.id


async def _revoke(services: Services, key_id: int) -> None:
    operator = system_principal(services.tenant, login="root", roles=("admin",))
    await revoke_key(services, operator, key_id)


async def _commands(url: str, name: str) -> int:
    client = Valkey.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


async def test_a_held_key_is_checked_without_valkey_or_the_database(
    process: Opener, settings: Settings
) -> None:
    async with process() as services:
        await _held(services)
        key, public_id, _ = await _admin_key(services)
        await authenticate(services, key)  # read from Valkey, kept in memory
        url = str(settings.valkey.url)
        before = await _commands(url, "mget"), await _commands(url, "get")
        with statements_on(services, "gw_api_keys|gw_users") as seen:
            for _ in range(5):
                assert (await authenticate(services, key)).login == "root"
        assert (await _commands(url, "mget"), await _commands(url, "get")) == before
        assert seen == []
        with pytest.raises(Unauthenticated):  # the secret is still compared
            await authenticate(services, f"jgw_{public_id}_{'A' * 43}")


async def test_memory_keeps_a_snapshot_no_longer_than_valkey_does(
    process: Opener, settings: Settings
) -> None:
    """Changes made behind the gateway's back (no eviction) apply within the snapshot's
    TTL, as without memory: an older snapshot in memory sends the check to Valkey."""
    async with process() as services:
        await _held(services)
        key, _, _ = await _admin_key(services)
        await authenticate(services, key)
        later = services.clock() + dt.timedelta(seconds=SNAPSHOT_TTL)
        url = str(settings.valkey.url)
        before = await _commands(url, "mget")
        await authenticate(replace(services, clock=lambda: later), key)
        assert await _commands(url, "mget") == before + 1


async def test_a_revocation_applies_on_the_next_request_of_every_process(
    process: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    async with process() as first, process() as second, process() as third:
        for services in (first, second, third):
            await _held(services)
        key, public_id, key_id = await _admin_key(first)
        for services in (first, second, third):
            await authenticate(services, key)
            await authenticate(services, key)
        assert second.key_leases is not None
        assert second.key_leases.get(public_id) is not None
        with caplog.at_level(logging.WARNING, logger="gateway.auth"):
            await _revoke(first, key_id)
        for services in (first, second, third):
            with pytest.raises(Unauthenticated, match="revoked"):
                await authenticate(services, key)
        # Every process acknowledged: none made the revocation wait out its lease.
        assert "not acknowledged" not in caplog.text


class _Stalled(KeyLeases[Any]):
    """A process that stops reading its subscription at the first eviction (its event
    loop stalled, say): messages and pongs queue up unread."""

    async def _handle(self, message: dict[str, Any], pings: dict[bytes, float]) -> None:
        if message["type"] == "message":
            await _forever()
        await super()._handle(message, pings)


class _Unregistered(_Stalled):
    """The same, whose registration is lost as soon as it is made (a flushed or evicted
    key), while its subscription stays: the eviction's subscriber count still waits."""

    async def _renew(self, pubsub: Any, pings: dict[bytes, float]) -> None:
        await super()._renew(pubsub, pings)
        await self._valkey.delete(f"{self._prefix}:auth:holders")


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize("holder", [_Stalled, _Unregistered], ids=["registered", "unregistered"])
async def test_a_revocation_waits_out_the_lease_of_a_process_that_does_not_answer(
    process: Opener,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    holder: type[_Stalled],
) -> None:
    async with process() as services:
        leases = await _held(services)
        key, public_id, key_id = await _admin_key(services)
        await authenticate(services, key)
        decoded = leases.get(public_id)
        assert decoded is not None
        client = Valkey.from_url(str(settings.valkey.url))
        stalled = holder(client, settings.valkey.key_prefix, epoch_key=services.cache.epoch())
        stalled.start()
        try:
            await wait_for_lease(stalled)
            stalled.offer(public_id, decoded, stalled.mark())
            assert stalled.get(public_id) is decoded
            with caplog.at_level(logging.WARNING, logger="gateway.auth"):
                await _revoke(services, key_id)
            # The revocation answered only once the stalled process's lease had run out.
            assert not stalled.held
            assert stalled.get(public_id) is None
            assert "not acknowledged by every holder" in caplog.text
        finally:
            await stalled.aclose()
            await client.aclose()


async def test_a_read_that_raced_an_eviction_is_not_kept(process: Opener) -> None:
    async with process() as services:
        leases = await _held(services)
        key, public_id, _ = await _admin_key(services)
        await authenticate(services, key)
        decoded = leases.get(public_id)
        assert decoded is not None
        mark = leases.mark()  # a request begins reading the snapshot...
        await announce(services.valkey, services.key_prefix, [public_id])  # ...evicted...
        assert leases.get(public_id) is None
        leases.offer(public_id, decoded, mark)  # ...and its read ends: not kept
        assert leases.get(public_id) is None
        leases.offer(public_id, decoded, leases.mark())  # a read begun after is kept
        assert leases.get(public_id) is decoded


async def test_a_revocation_published_while_a_subscription_is_down_still_applies(
    process: Opener, settings: Settings
) -> None:
    async with process() as holder, process() as revoker:
        leases = await _held(holder)
        await _held(revoker)
        key, public_id, key_id = await _admin_key(revoker)
        await authenticate(holder, key)
        assert leases.get(public_id) is not None
        await kill_subscriptions(str(settings.valkey.url))
        await _revoke(revoker, key_id)  # its message may be lost: the lease is not
        assert leases.get(public_id) is None
        with pytest.raises(Unauthenticated, match="revoked"):
            await authenticate(holder, key)
        # The holder subscribes again, and holds a lease again.
        await _held(holder)
        await authenticate(revoker, (await _admin_key(revoker))[0])


async def test_a_recovered_cache_empties_every_process_memory(process: Opener) -> None:
    """After Valkey was unreachable for some process, its epoch bump (which makes key
    snapshots stale) empties every process's memory too."""
    async with process() as holder, process() as recovering:
        leases = await _held(holder)
        await _held(recovering)
        key, public_id, _ = await _admin_key(holder)
        await authenticate(holder, key)
        assert leases.get(public_id) is not None
        recovering.cache.note_failure()
        await recovering.cache.recover()
        assert leases.get(public_id) is None


async def test_an_unexpected_message_empties_memory_and_the_lease_holds(
    process: Opener,
) -> None:
    async with process() as services:
        leases = await _held(services)
        key, public_id, _ = await _admin_key(services)
        await authenticate(services, key)
        await services.valkey.publish(f"{services.key_prefix}:auth:evict", b"\xff")
        await services.valkey.publish(f"{services.key_prefix}:auth:evict", b"")
        await announce(services.valkey, services.key_prefix, ["other"])  # after those
        assert leases.get(public_id) is None
        await authenticate(services, key)
        assert leases.held
        assert leases.get(public_id) is not None


async def test_a_process_that_stops_no_longer_holds_evictions_up(
    process: Opener, settings: Settings
) -> None:
    async with process() as services:
        leases = await _held(services)
        holders = f"{services.key_prefix}:auth:holders"
        assert leases.name.encode() in await services.valkey.hkeys(holders)
    client = Valkey.from_url(str(settings.valkey.url))
    try:
        assert leases.name.encode() not in await client.hkeys(holders)
    finally:
        await client.aclose()
