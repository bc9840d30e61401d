"""Loading a key's snapshot when Valkey has none: once for every request waiting on it,
and never shared across an eviction (`resolvers.auth._load_once`)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from resolvers import auth
from resolvers.auth import KEY_PATTERN, authenticate, evict_user, revoke_key
from resolvers.errors import Unauthenticated
from resolvers.principal import system_principal
from resolvers.services import Services
from tests.conftest import issue_admin_key, statements_on


async def _admin_key(services: Services) -> tuple[str, int]:
    issued = await issue_admin_key(services, "loads")
    return issued.secret, issued.key.user_id


def _snapshot_key(services: Services, key: str) -> str:
    match = KEY_PATTERN.fullmatch(key)
    assert match is not None
    return f"{services.key_prefix}:auth:{match.group(1)}"


async def test_concurrent_requests_share_one_load_of_an_expired_snapshot(
    services: Services,
) -> None:
    key, _ = await _admin_key(services)
    await authenticate(services, key)
    await services.valkey.delete(_snapshot_key(services, key))  # as its TTL would
    with statements_on(services, "gw_api_keys") as seen:
        principals = await asyncio.gather(*(authenticate(services, key) for _ in range(20)))
    assert {p.login for p in principals} == {"root"}
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1, seen


async def test_each_eviction_leaves_its_own_tombstone(services: Services) -> None:
    key, admin_id = await _admin_key(services)
    await authenticate(services, key)
    stored = _snapshot_key(services, key)
    await evict_user(services, admin_id)
    first = await services.valkey.get(stored)
    await evict_user(services, admin_id)
    second = await services.valkey.get(stored)
    assert first is not None
    assert second is not None
    assert first.startswith(b"-")
    assert second.startswith(b"-")
    assert first != second
    assert (await authenticate(services, key)).login == "root"  # a tombstone is a miss


async def test_a_revocation_applies_to_requests_waiting_after_it(services: Services) -> None:
    """Requests that read Valkey after the revocation's tombstone load the key again."""
    key, _ = await _admin_key(services)
    principal = await authenticate(services, key)
    assert principal.key_id is not None
    operator = system_principal(services.tenant, login="root", roles=("admin",))
    await revoke_key(services, operator, principal.key_id)
    results = await asyncio.gather(
        *(authenticate(services, key) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, Unauthenticated) for r in results), results
    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticate(services, key)


async def test_a_cancelled_load_does_not_fail_the_requests_waiting_on_it(
    services: Services,
) -> None:
    """The request loading a snapshot is cancelled (its client went away) while others
    wait on that load: one of them loads it for the rest instead of all being cancelled."""
    key, _ = await _admin_key(services)
    key_id = (await authenticate(services, key)).key_id
    keys = services.schema.system.api_keys
    async with services.writer.begin() as conn:  # the next load writes `last_used_on`
        await conn.execute(update(keys).where(keys.c.id == key_id).values(last_used_on=None))
    await services.valkey.delete(_snapshot_key(services, key))
    async with services.writer.begin() as held:  # holds that write back
        await held.execute(update(keys).where(keys.c.id == key_id).values(name="held"))
        loader = asyncio.create_task(authenticate(services, key))
        for _ in range(500):
            if auth._LOADS:
                break
            await asyncio.sleep(0.01)
        assert auth._LOADS, "the first request never started loading"
        waiters = [asyncio.create_task(authenticate(services, key)) for _ in range(3)]
        await asyncio.sleep(0.2)  # they read Valkey, find nothing, join the load
        loader.cancel()
        await asyncio.sleep(0.05)
    assert [(await waiter).login for waiter in waiters] == ["root"] * 3
    assert not auth._LOADS
    with pytest.raises(asyncio.CancelledError):
        await loader
