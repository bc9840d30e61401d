"""Logging in for a key against real servers: enumeration, rehashing, rate limits, the hashing cap.

Work is counted (`Passwords.calls`), never timed; limits live in the database, so they
hold across app instances sharing it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import argon2
import httpx
import pytest
from sqlalchemy import select, update

from gateway.settings import Settings
from tests.conftest import USER_PASSWORD, Api, start_api

LOGIN = "/api/v1/auth/keys"

running_api: Callable[[Settings], AbstractAsyncContextManager[Api]] = asynccontextmanager(start_api)
"""A further app instance on the same database and Valkey, as a context manager."""


def _with_security(settings: Settings, **changes: Any) -> Settings:
    security = dataclasses.replace(settings.security, **changes)
    return dataclasses.replace(settings, security=security)


async def _login(
    api: Api, login: str, password: str = USER_PASSWORD, **headers: str
) -> httpx.Response:
    return await api.client.post(
        LOGIN, json={"login": login, "password": password, "name": "test"}, headers=headers
    )


async def _password_hash(api: Api, user_id: int) -> str:
    async with api.db() as db:
        users = db.schema.system.users
        async with db.engine.connect() as conn:
            stored = await conn.scalar(select(users.c.password_hash).where(users.c.id == user_id))
    assert isinstance(stored, str)
    return stored


# --- enumeration ----------------------------------------------------------------------


async def test_unknown_login_and_wrong_password_look_and_cost_the_same(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    passwords = api.app_services.passwords

    before = passwords.calls
    wrong = await _login(api, "carol", "not-the-password")
    after_wrong = passwords.calls
    unknown = await _login(api, "nobody-by-that-name", "not-the-password")
    after_unknown = passwords.calls

    assert after_wrong - before == 1
    assert after_unknown - after_wrong == 1
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert wrong.headers["content-type"] == unknown.headers["content-type"]
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]


async def test_user_without_a_password_costs_the_same_too(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    nopass_response = await api.client.post(
        "/api/v1/users",
        json={"login": "nopass", "roles": ["integration"]},
        headers=api.auth(api.admin_key),
    )
    assert nopass_response.status_code == 201
    passwords = api.app_services.passwords
    before = passwords.calls
    no_hash = await _login(api, "nopass", "anything-at-all")
    assert passwords.calls - before == 1
    wrong = await _login(api, "carol", "anything-at-all")
    assert no_hash.status_code == 401
    assert no_hash.content == wrong.content


# --- rehashing ------------------------------------------------------------------------


async def test_hash_with_older_parameters_is_upgraded_on_login(api: Api) -> None:
    carol = await api.create_user("carol", roles=["integration"])
    current = api.app_services.passwords.hasher
    older = argon2.PasswordHasher(
        time_cost=current.time_cost + 1,
        memory_cost=current.memory_cost * 2,
        parallelism=current.parallelism + 1,
    )
    old_hash = older.hash(USER_PASSWORD)
    assert current.check_needs_rehash(old_hash)
    async with api.db() as db:
        users = db.schema.system.users
        async with db.writer.begin() as conn:
            await conn.execute(
                update(users).where(users.c.id == carol).values(password_hash=old_hash)
            )

    await api.login("carol")

    upgraded = await _password_hash(api, carol)
    assert upgraded != old_hash
    assert current.verify(upgraded, USER_PASSWORD)
    assert not current.check_needs_rehash(upgraded)
    await api.login("carol")
    assert await _password_hash(api, carol) == upgraded


async def test_failed_login_does_not_rehash(api: Api) -> None:
    carol = await api.create_user("carol", roles=["integration"])
    old_hash = argon2.PasswordHasher(time_cost=2, memory_cost=2048).hash(USER_PASSWORD)
    async with api.db() as db:
        users = db.schema.system.users
        async with db.writer.begin() as conn:
            await conn.execute(
                update(users).where(users.c.id == carol).values(password_hash=old_hash)
            )
    assert (await _login(api, "carol", "not-the-password")).status_code == 401
    assert await _password_hash(api, carol) == old_hash


# --- rate limits ----------------------------------------------------------------------


def _assert_locked(response: httpx.Response, window: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["retry-after"]) <= window


async def test_account_is_locked_after_max_failures_on_every_instance(api: Api) -> None:
    limit = api.settings.security.login_max_failures
    window = api.settings.security.login_window
    await api.create_user("carol", roles=["integration"])
    await api.create_user("dave", roles=["integration"])
    async with running_api(api.settings) as other:
        for attempt in range(limit):
            instance = api if attempt % 2 == 0 else other
            response = await _login(instance, "carol", "not-the-password")
            assert response.status_code == 401, attempt

        for instance in (api, other):
            _assert_locked(await _login(instance, "carol", "not-the-password"), window)
            _assert_locked(await _login(instance, "carol"), window)
            _assert_locked(await _login(instance, " Carol "), window)
        assert (await _login(api, "dave")).status_code == 201


async def test_success_below_the_limit_resets_the_account_count(api: Api) -> None:
    limit = api.settings.security.login_max_failures
    await api.create_user("carol", roles=["integration"])
    for _ in range(limit - 1):
        assert (await _login(api, "carol", "not-the-password")).status_code == 401
    assert (await _login(api, "carol")).status_code == 201
    for _ in range(limit - 1):
        assert (await _login(api, "carol", "not-the-password")).status_code == 401
    assert (await _login(api, "carol")).status_code == 201


@pytest.mark.slow
async def test_account_lock_recovers_after_the_window(settings: Settings) -> None:
    window = 2
    async with running_api(_with_security(settings, login_window=window)) as api:
        await api.create_user("carol", roles=["integration"])
        for _ in range(api.settings.security.login_max_failures):
            assert (await _login(api, "carol", "not-the-password")).status_code == 401
        locked = await _login(api, "carol")
        _assert_locked(locked, window)

        await asyncio.sleep(int(locked.headers["retry-after"]) + 0.2)
        assert (await _login(api, "carol")).status_code == 201
        assert (await _login(api, "carol", "not-the-password")).status_code == 401
        assert (await _login(api, "carol")).status_code == 201


async def test_client_address_is_locked_after_its_own_limit(settings: Settings) -> None:
    """Failures on many accounts from one address lock that address, whatever it forwards."""
    per_address = 3
    limited = _with_security(settings, login_max_failures_per_address=per_address)
    async with running_api(limited) as api:
        await api.create_user("carol", roles=["integration"])
        for n in range(per_address):
            response = await _login(
                api, f"guess-{n}", "not-the-password", **{"X-Forwarded-For": f"203.0.113.{n}"}
            )
            assert response.status_code == 401
        _assert_locked(await _login(api, "carol"), limited.security.login_window)


async def test_address_lock_holds_on_another_instance(settings: Settings) -> None:
    per_address = 3
    limited = _with_security(settings, login_max_failures_per_address=per_address)
    async with running_api(limited) as api, running_api(limited) as other:
        await api.create_user("carol", roles=["integration"])
        for n in range(per_address):
            assert (await _login(api, f"guess-{n}", "not-the-password")).status_code == 401
        _assert_locked(await _login(other, "carol"), limited.security.login_window)


# --- the hashing cap ------------------------------------------------------------------


def _concurrent_logins(
    api: Api, login: str, count: int, password: str = USER_PASSWORD
) -> list[httpx.Response]:
    """Send `count` logins at once on the app's own event loop.

    The test client hands requests to the app one by one; a burst needs a client running
    next to the app, in the test client's portal.
    """

    async def burst() -> list[httpx.Response]:
        app: Any = api.app  # Litestar's ASGI types are narrower than httpx's generic ones
        transport = httpx.ASGITransport(app=app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            body = {"login": login, "password": password, "name": "burst"}
            return list(await asyncio.gather(*(http.post(LOGIN, json=body) for _ in range(count))))

    return api.client.blocking_portal.call(burst)


@pytest.mark.slow
async def test_concurrent_logins_stay_within_the_hashing_cap(settings: Settings) -> None:
    """Real argon2id cost, two hashes at a time: excess waits, then gets 503, never an error."""
    capped = dataclasses.replace(
        _with_security(settings, hash_concurrency=2), password_profile="rfc9106_low_memory"
    )
    async with running_api(capped) as api:
        await api.create_user("carol", roles=["integration"])
        responses = _concurrent_logins(api, "carol", 50)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 429, 503}, statuses
    assert 201 in statuses
    for response in responses:
        if response.status_code in {429, 503}:
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["content-type"] == "application/problem+json"


async def test_a_burst_of_guesses_gets_no_more_answers_than_the_limit(api: Api) -> None:
    """Guesses that all pass the lock check before any failure is recorded still count."""
    limit = api.settings.security.login_max_failures
    await api.create_user("carol", roles=["integration"])
    responses = _concurrent_logins(api, "carol", 30, password="not-the-password")
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * limit + [429] * (30 - limit)
    _assert_locked(await _login(api, "carol"), api.settings.security.login_window)
